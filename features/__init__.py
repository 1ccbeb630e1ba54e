"""Features (画像): teacher portraits from assessments and training records, cohort portraits, and the
(teacher, course) pair features the ranker reads. Entry points:

- `build_portraits(tables)` — competency estimates with uncertainty, history aggregates, hours owed;
- `estimate_competencies` — the diagnostic step alone; `history_features` — the training-history step alone;
- `cohort_portrait(rows, competencies, by)` — aggregates of a county, school, class, …;
- `pair_features` — what the ranker sees of a (teacher, course) pair;
- `occasion_measurements` / `changes` — competencies at each assessment date and pre/post changes (成长).
"""

from data.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "features.portrait": ("build_portraits", "Portraits"),
        "features.diagnostics": ("estimate_competencies",),
        "features.history": ("history_features", "hours_owed"),
        "features.cohort": ("cohort_portrait", "CohortPortrait"),
        "features.pairs": ("pair_features",),
        "features.growth": ("occasion_measurements", "changes"),
    },
)
