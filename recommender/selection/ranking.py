"""Ranking the eligible and filling the seats: each teacher's need for what the project teaches, and the
quota (or the per-county allocations) taken best first."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.history import positions
from recommender.selection.content import ProjectContent
from recommender.selection.project import SelectionError


def need_scores(
    teacher_ids: pd.Index,
    competencies: pd.DataFrame,
    content: ProjectContent,
    codes: np.ndarray,
    target: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Need (0–1): the project-weighted mean gap of each teacher divided by the target level, so 1 means a
    teacher at the bottom of the scale on everything the project teaches. Also the share of that weight
    resting on prior estimates (teachers not assessed on those competencies)."""
    t = positions(teacher_ids, competencies["teacher_id"])
    k = positions(pd.Index(codes), competencies["competency"])
    keep = (t >= 0) & (k >= 0)
    t, k = t[keep], k[keep]
    gap = pd.to_numeric(competencies["gap"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)[keep]
    w = content.weights[k] * ~np.isnan(gap)
    n = len(teacher_ids)
    covered = np.bincount(t, w, minlength=n)
    weighted = np.bincount(t, w * np.nan_to_num(gap), minlength=n)
    prior = (
        competencies["is_prior"].fillna(False).to_numpy(dtype=bool)[keep] if "is_prior" in competencies else 0
    )
    prior_w = np.bincount(t, w * prior, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        need = np.where(covered > 0, weighted / covered / target, 0.0)
        prior_share = np.where(covered > 0, prior_w / covered, 1.0)
    return np.clip(need, 0.0, 1.0), prior_share


def fill_quota(ranked: pd.DataFrame, quota: int | None, allocations: Mapping[str, int] | None) -> np.ndarray:
    """Which of the ``ranked`` teachers (best first, with a ``county`` column) take the seats.

    Without allocations the first ``quota`` (all when the quota is unknown). With allocations each county
    takes its best ``allocations[county]`` teachers (fewer when it has fewer eligible); counties without an
    allocation take none, and seats a county cannot fill stay open — reassigning them is the office's call.
    """
    n = len(ranked)
    if not allocations:
        return np.arange(n) < (n if quota is None else quota)
    total = sum(allocations.values())
    if quota is not None and total > quota:
        raise SelectionError(f"各县名额之和 {total} 超过项目名额 {quota}，请核对名额分配。")
    place = ranked.groupby("county", sort=False).cumcount().to_numpy()
    seats = ranked["county"].map(dict(allocations)).fillna(0).to_numpy(dtype=float)
    return place < seats
