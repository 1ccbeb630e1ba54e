"""Synthetic province (合成省份): a realistic 江西省 export in the input data contract, with its ground truth.

`tdr generate DIR [--world need|quality|popularity|mixed]`, the demo and every evaluation with known answers use
it; training never reads DIR/_truth/.

Worlds (`utility.benefit`): what truly helps a teacher is the gap on the course's competencies × level fit
(need), the course's own quality (quality), what peers like (popularity), or gap × fit × quality × √appeal
(mixed, the default). Enrolments do not follow it: teachers choose on the need their first diagnosis showed
them (never updated as training closes gaps), course quality, popularity, format taste and career stage
(`records.ChoiceModel`); completion, scores and satisfaction follow the world's true utility. Competencies move
(`growth`): a trend for everybody plus a heterogeneous true effect of each completed course or project, and
two dated assessment waves (before the training period and in its last eighteen months; some teachers
assessed once, about a quarter never) measure them with item noise and a day-of-test state, so that naive
pre/post comparisons are biased by the trend, by other training and by regression to the mean.

DIR/_truth/ (each file's columns in TRUTH_FILES and meta.json "files"):

| file | one row per | holds |
|---|---|---|
| latent.parquet | teacher × competency | true competency at as_of: theta (logit scale), score_0_100 |
| waves.parquet | assessed teacher × wave × competency | true competency on the wave's day, and with the day's state |
| utility.parquet | teacher × course (top 200) | true utility at as_of in the province's world (NDCG gains) |
| courses.parquet | course | true codes and weights, quality, level, popularity, audience, tagged |
| items.parquet | item | true Q-matrix row, discriminations, difficulty |
| record_effects.parquet | completed record × competency | θ and points it moved; between the teacher's two waves |
| course_effects.parquet | course × competency | mean true effect, over all completions and between waves |
| project_effects.parquet | project run × competency | the same for provincial projects |
| meta.json | — | seed, world, as_of, display scale, utility and growth parameters, trend per competency |

Modules, in the order `generate` draws them from one seed: `teachers` (geography, teachers, true competencies),
`catalogue` and `text` (courses and their Chinese text, from the phrase bank in phrases.yaml and providers.csv),
`assessments` (item bank, who is assessed when, responses, scale-level scores), `records` (five years of
choices and project runs), `growth` (trend and effects; project_codes.csv), `utility` (benefit and true
utility), `tables` (the contract files), `truth` (DIR/_truth/ and its one reader), `province` (`generate`).
"""

from data.synthetic.common import DEFAULT_WORLD, WORLDS, World
from data.synthetic.province import UTILITY_CELLS_MAX, GenerationSummary, generate
from data.synthetic.truth import TRUTH_FILES, Truth, load_truth
from data.synthetic.utility import code_family, relevance, true_utility, utility_core

__all__ = [
    "DEFAULT_WORLD",
    "WORLDS",
    "World",
    "TRUTH_FILES",
    "UTILITY_CELLS_MAX",
    "GenerationSummary",
    "Truth",
    "code_family",
    "generate",
    "load_truth",
    "relevance",
    "true_utility",
    "utility_core",
]
