"""Public names of a package, imported when first used: each stage's ``__init__`` names its entry points (the
way scikit-learn's ``cluster/__init__`` exposes ``KMeans``) without importing every module — and its heavy
dependencies — whenever one of its modules is."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that resolves each name of ``exports`` (name -> module)."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(exports[name]), name)

    return __getattr__
