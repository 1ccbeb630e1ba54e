"""Recommender (推荐): training, the online scoring core, menus under the policy, batch engines, trainee
selection, offline evaluation and the engine the service answers from. Entry points:

- `train(ws, settings)` — portraits, encoder index, IRT, ranker → a new artifact bundle;
- `rank_block(block, art)` / `score_batch(block, art)` — the pure scoring core every path calls;
- `plan_menu` / `plan_menus` / `check_menu` — menus under the policy and their independent checker;
- `score_local` / `score_ray` — a province in blocks, in local processes or on Ray;
- `select_trainees` — trainee selection and classes for a project (`recommender.selection`);
- `evaluate` — offline metrics against baselines; `search` — hybrid course search;
- `Engine` — one workspace's answers for the service; `Settings` — the TDR_* settings.
"""

from data.lazy import lazy_exports

_EXPORTS = {
    "train": "recommender.train",
    "rank_block": "recommender.scoring",
    "score_batch": "recommender.scoring",
    "PortraitBlock": "recommender.scoring",
    "plan_menu": "recommender.menu",
    "plan_menus": "recommender.menu",
    "check_menu": "recommender.menu",
    "score_local": "recommender.batch",
    "score_ray": "recommender.ray_engine",
    "select_trainees": "recommender.selection",
    "evaluate": "recommender.evaluate",
    "search": "recommender.search",
    "Engine": "recommender.service",
    "Settings": "recommender.config",
    "load_current": "recommender.artifacts",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
