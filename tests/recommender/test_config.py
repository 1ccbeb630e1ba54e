"""Settings are built once at the edge from TDR_* variables; a value that does not parse names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.settings import ServiceSettings
from recommender.config import Settings, SettingsError
from tdr.cli import app


def test_defaults_hold_without_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TDR_TOP_K", "TDR_TARGET_LEVEL", "TDR_POLICY", "TDR_MIN_COHORT_SIZE"):
        monkeypatch.delenv(name, raising=False)
    s = ServiceSettings.from_env()
    assert (s.top_k, s.target_level, s.policy, s.min_cohort_size) == (20, 70.0, "default", 5)


def test_the_environment_and_overrides_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDR_TOP_K", "30")
    monkeypatch.setenv("TDR_POLICY", "henan_2021")
    s = Settings.from_env(policy="jiangxi_2022")
    assert s.top_k == 30 and s.policy == "jiangxi_2022"


@pytest.mark.parametrize(
    ("name", "value"), [("TDR_TOP_K", "twenty"), ("TDR_TARGET_LEVEL", "120"), ("TDR_MIN_COHORT_SIZE", "0")]
)
def test_a_bad_value_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"{name}='{value}'"):
        ServiceSettings.from_env()


def test_the_cli_stops_on_a_bad_value_with_the_variables_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TDR_TARGET_LEVEL", "seventy")
    result = CliRunner().invoke(app, ["recommend", "T1", "--workspace", str(tmp_path)])
    assert result.exit_code == 2
    assert "TDR_TARGET_LEVEL" in result.output


def test_the_settings_offer_exactly_the_encoders_backends_default_first() -> None:
    from typing import get_args

    from models.encoder import BACKENDS, DEFAULT_BACKEND

    field = Settings.model_fields["encoder_backend"]
    assert get_args(field.annotation) == BACKENDS
    assert field.default == DEFAULT_BACKEND == BACKENDS[0]
