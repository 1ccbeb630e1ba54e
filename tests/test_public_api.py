"""Each stage names its entry points where the package begins (`__all__`), and every name there resolves."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["data", "models", "features", "recommender", "recommender.selection", "api"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_inside_its_package(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, f"{package} names no entry points"
    top = package.split(".")[0]
    for name in module.__all__:
        value = getattr(module, name)
        origin = getattr(value, "__module__", None) or top
        assert origin.split(".")[0] == top, f"{package}.{name} comes from {origin}"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        importlib.import_module("recommender").nothing  # noqa: B018
