"""Service settings: the knobs of the API and pages, on top of the engine's (`recommender.config.Settings`),
read once from TDR_* environment variables when the app is made and passed to the engine it loads."""

from __future__ import annotations

from pydantic import Field

from recommender.config import Settings


class ServiceSettings(Settings):
    """What a deployment may tune without code: reload cadence, privacy floor, result sizes — and every
    engine setting (TDR_RELOAD_INTERVAL_S, TDR_MIN_COHORT_SIZE, TDR_SEARCH_MAX_K, …)."""

    # How often a request may look at WS/bundles/CURRENT for a newer bundle; the check is one small file read.
    reload_interval_s: float = Field(default=2.0, ge=0)
    # Cohorts (and heatmap cells) smaller than this are not shown: with fewer people an aggregate is a person.
    min_cohort_size: int = Field(default=5, ge=1)
    search_max_k: int = Field(default=50, ge=1)
