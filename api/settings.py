"""Service settings: the knobs of the API and pages, read once from TDR_* environment variables.

Engine-wide settings (encoder, policy, top-k) live in `recommender.config`; these only shape the service.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass(frozen=True)
class ServiceSettings:
    """What a deployment may tune without code: reload cadence, privacy floor, result sizes."""

    # How often a request may look at WS/bundles/CURRENT for a newer bundle; the check is one small file read.
    reload_interval_s: float = field(default_factory=lambda: _env_float("TDR_RELOAD_INTERVAL_S", 2.0))
    # Cohorts (and heatmap cells) smaller than this are not shown: with fewer people an aggregate is a person.
    min_cohort_size: int = field(default_factory=lambda: _env_int("TDR_MIN_COHORT_SIZE", 5))
    search_max_k: int = field(default_factory=lambda: _env_int("TDR_SEARCH_MAX_K", 50))
    # Largest request body accepted, checked before the body is read or the token looked at (413 beyond it).
    # The largest legitimate body, a re-plan excluding 500 courses, is about 35 KB.
    # Lifetime of a token `tdr token create` mints unless told otherwise (--days); tokens made before lifetimes
    # existed get it from the first time the store is opened.
    token_ttl_days: float = field(default_factory=lambda: _env_float("TDR_TOKEN_TTL_DAYS", 30.0))
    max_body_bytes: int = field(default_factory=lambda: _env_int("TDR_MAX_BODY_BYTES", 128 * 1024))
