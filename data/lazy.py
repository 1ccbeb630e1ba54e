"""Public names of a package, imported when first used: each stage's ``__init__`` names its entry points (the
way scikit-learn's ``cluster/__init__`` exposes ``KMeans``) without importing every module — and its heavy
dependencies — whenever one of its modules is."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, modules: Mapping[str, tuple[str, ...]]
) -> tuple[list[str], Callable[[str], Any]]:
    """``__all__`` and a module ``__getattr__`` for ``package``, from its modules and the public names of each."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(where[name]), name)

    return sorted(where), __getattr__
