"""Benchmarks: each writes its figures into bench/results/ (see README "Results")."""

from __future__ import annotations

from pathlib import Path


def shared_benchmarks() -> Path:
    """The real data kept outside the repository: ``shared/benchmarks`` beside the checkout (or beside a folder
    holding it, as for a git worktree); the one beside the checkout when none is found, for the error to name."""
    root = Path(__file__).resolve().parents[1]
    for folder in root.parents:
        if (folder / "shared" / "benchmarks").is_dir():
            return folder / "shared" / "benchmarks"
    return root.parent / "shared" / "benchmarks"
