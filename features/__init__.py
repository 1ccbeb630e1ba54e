"""Features (画像): teacher portraits from assessments and training records, cohort portraits, and the
(teacher, course) pair features the ranker reads. Entry points:

- `build_portraits(tables)` — competency estimates with uncertainty, history aggregates, hours owed;
- `estimate_competencies` — the diagnostic step alone; `history_features` — the training-history step alone;
- `cohort_portrait(rows, competencies, by)` — aggregates of a county, school, class, …;
- `pair_features` — what the ranker sees of a (teacher, course) pair.
"""

from data.lazy import lazy_exports

_EXPORTS = {
    "build_portraits": "features.portrait",
    "Portraits": "features.portrait",
    "estimate_competencies": "features.diagnostics",
    "history_features": "features.history",
    "hours_owed": "features.history",
    "cohort_portrait": "features.cohort",
    "CohortPortrait": "features.cohort",
    "pair_features": "features.pairs",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
