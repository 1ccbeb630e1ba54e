"""Trainee selection (精准选人) and classes (50人编班) for a training project: who may join, who should, in which
class and at what cost — every exclusion and every choice with a reason a clerk can read.

Eligibility applies the project's target group and the policy's bars; ranking measures how much the
project's content (embedded and tagged like a course) meets each teacher's gaps, plus the policy's explicit
rural weight; classes are k-means whose assignment step keeps every class at its size.

One module per step, in the order a selection runs:
- `project`: the project row (`Project`), its cells' parsers, the projects table;
- `content`: what the project teaches (`infer_contents`);
- `eligibility`: who may join (`eligibility`, the rules in `RULES`, the three-year bar);
- `ranking`: need for the project's content (`need_scores`) and the seats (`fill_quota`);
- `classes`: size-constrained k-means (`form_classes`) and its `spread`;
- `select`: the selection itself (`SelectionContext`, `select_trainees`, `Selection`);
- `export`: the page's and the workbook's rows, the workbook, the text `tdr select` prints;
- `scope`: what a caller may see (`visible_selection`) and where one teacher stands (`standing`).
"""

from recommender.selection.classes import class_sizes, form_classes, random_spread, spread
from recommender.selection.content import CONTENT_SOURCE_ZH, ProjectContent, infer_contents
from recommender.selection.eligibility import REPEAT_YEARS, RULES, bar_guards, eligibility
from recommender.selection.export import (
    class_rows,
    overview_rows,
    portrait_rows,
    read_allocations,
    roster_rows,
    run_selection,
    selection_workbook,
    summary_text,
)
from recommender.selection.project import (
    Project,
    SelectionError,
    as_list,
    parse_county_quotas,
    project_table,
    zh_label,
)
from recommender.selection.ranking import fill_quota, need_scores
from recommender.selection.scope import (
    OutsideScope,
    Standing,
    projects_in_scope,
    standing,
    visible_selection,
)
from recommender.selection.select import (
    Cost,
    Selection,
    SelectionContext,
    select_trainees,
    taxonomy_names,
)

__all__ = [
    "CONTENT_SOURCE_ZH",
    "REPEAT_YEARS",
    "RULES",
    "Cost",
    "OutsideScope",
    "Project",
    "ProjectContent",
    "Selection",
    "SelectionContext",
    "SelectionError",
    "Standing",
    "as_list",
    "bar_guards",
    "class_rows",
    "class_sizes",
    "eligibility",
    "fill_quota",
    "form_classes",
    "infer_contents",
    "need_scores",
    "overview_rows",
    "parse_county_quotas",
    "portrait_rows",
    "project_table",
    "projects_in_scope",
    "random_spread",
    "read_allocations",
    "roster_rows",
    "run_selection",
    "select_trainees",
    "selection_workbook",
    "spread",
    "standing",
    "summary_text",
    "taxonomy_names",
    "visible_selection",
    "zh_label",
]
