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
    # Lifetime of a token `tdr token create` mints unless told otherwise (--days); tokens made before lifetimes
    # existed get it from the first time the store is opened.
    token_ttl_days: float = Field(default=30.0, gt=0)
    # Largest request body accepted, checked before the body is read or the token looked at (413 beyond it).
    # The largest legitimate body, a re-plan excluding 500 courses, is about 35 KB.
    max_body_bytes: int = Field(default=128 * 1024, ge=1)
