"""Synthetic province (合成省份): a realistic 江西省 export in the input data contract, with its ground truth.

`tdr generate`, the demo and every evaluation with known answers use it; training never reads DIR/_truth/.

Modules, in the order `generate` draws them from one seed: `teachers` (geography, teachers, true competencies),
`catalogue` and `text` (courses and their Chinese text, from the phrase bank in phrases.yaml and providers.csv),
`assessments` (item bank, responses, scale-level scores), `records` (five years of choices and project runs),
`utility` (the true utility), `tables` (the contract files), `truth` (DIR/_truth/ and its reader), `province`
(`generate` itself).
"""

from data.synthetic.province import UTILITY_CELLS_MAX, GenerationSummary, generate
from data.synthetic.truth import TRUTH_FILES, Truth, load_truth
from data.synthetic.utility import code_family, relevance, true_utility, utility_core

__all__ = [
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
