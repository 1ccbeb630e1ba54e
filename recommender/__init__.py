"""Recommender (推荐): training, the online scoring core, menus under the policy, batch engines, trainee
selection, offline evaluation and the engine the service answers from. Entry points:

- `train(ws, settings)` — portraits, encoder index, IRT, ranker → a new artifact bundle;
- `train_incremental` / `score_changed` — a daily update: only the teachers whose inputs / portraits changed;
- `rank_block(block, art)` / `score_batch(block, art)` — the pure scoring core every path calls;
- `plan_menu` / `plan_menus` / `check_menu` — menus under the policy and their independent checker;
- `score_local` / `score_ray` — a province in blocks, in local processes or on Ray;
- `select_trainees` — trainee selection and classes for a project (`recommender.selection`);
- `evaluate` — offline metrics against baselines; `search` — hybrid course search;
- `measure_growth` / `unit_effects` — a workspace's growth and each course's and project's effects (训后成效);
- `Engine` — one workspace's answers for the service; `Settings` — the TDR_* settings.
"""

from data.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "recommender.train": ("train",),
        "recommender.incremental": ("train_incremental", "score_changed"),
        "recommender.scoring": ("rank_block", "score_batch", "PortraitBlock"),
        "recommender.menu": ("plan_menu", "plan_menus", "check_menu"),
        "recommender.batch": ("score_local",),
        "recommender.ray_engine": ("score_ray",),
        "recommender.selection": ("select_trainees",),
        "recommender.evaluate": ("evaluate",),
        "recommender.search": ("search",),
        "recommender.effects": ("measure_growth", "unit_effects"),
        "recommender.service": ("Engine",),
        "recommender.config": ("Settings",),
        "recommender.artifacts": ("load_current",),
    },
)
