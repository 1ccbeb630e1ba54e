"""Teacher portraits (教师数字画像): competencies with uncertainty, training history, hours owed, top gaps.

`build_portraits(tables, policy, asof)` is the stage's pure heart: normalised tables in, two DataFrames out (one
row per teacher, and teacher × competency in long form), written under WS/portraits/ by `tdr train`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.policy import Policy
from features.diagnostics import estimate_competencies
from features.history import CAREER_STAGE_ZH, career_stage, history_features, hours_owed
from models.irt import MIRT

TOP_GAPS = 3
TEACHER_COLUMNS = (
    "teacher_id", "stage", "subject", "province", "city", "county", "school_id", "school_type", "title",
    "years_teaching", "roles",
)  # fmt: skip


@dataclass(frozen=True)
class Tables:
    """The validated tables a portrait is built from (empty frames for tables a deployment lacks)."""

    teachers: pd.DataFrame
    courses: pd.DataFrame
    records: pd.DataFrame
    items: pd.DataFrame
    responses: pd.DataFrame
    scores: pd.DataFrame
    taxonomy: pd.DataFrame


@dataclass(frozen=True)
class Portraits:
    """数字画像: `teachers` (one row per teacher) and `competencies` (teacher × competency, long form)."""

    teachers: pd.DataFrame
    competencies: pd.DataFrame


def as_of(tables: Tables) -> pd.Timestamp:
    """The portrait date: the day after the latest dated event in the data (deterministic for a data set)."""
    dates = [
        tables.records.get("start_date", pd.Series(dtype="datetime64[ns]")),
        tables.records.get("end_date", pd.Series(dtype="datetime64[ns]")),
        tables.responses.get("taken_at", pd.Series(dtype="datetime64[ns]")),
        tables.scores.get("taken_at", pd.Series(dtype="datetime64[ns]")),
    ]
    latest = max(
        (pd.to_datetime(d).max() for d in dates if len(d) and pd.to_datetime(d).notna().any()), default=None
    )
    return (
        pd.Timestamp(latest) if latest is not None else pd.Timestamp("2025-01-01")
    ).normalize() + pd.Timedelta(days=1)


def add_gaps(competencies: pd.DataFrame, teachers: pd.DataFrame, target_level: float) -> pd.DataFrame:
    """Peer mean (same stage × subject) and gap to the target level for every teacher × competency."""
    meta = teachers[["teacher_id", "stage", "subject"]]
    c = competencies.merge(meta, on="teacher_id", how="left")
    peer = c.groupby(["stage", "subject", "competency"], dropna=False)["estimate"].transform("mean")
    return competencies.assign(
        peer_mean=peer.to_numpy(), gap=np.clip(target_level - competencies["estimate"].to_numpy(), 0.0, None)
    )


def top_gaps(competencies: pd.DataFrame, k: int = TOP_GAPS) -> pd.Series:
    """Each teacher's k competencies with the largest gap, weighted toward gaps below peers."""
    c = competencies.assign(
        _key=competencies["gap"] + 0.5 * (competencies["peer_mean"] - competencies["estimate"])
    )
    c = c[c["gap"] > 0].sort_values(["teacher_id", "_key"], ascending=[True, False], kind="stable")
    return c.groupby("teacher_id", sort=True)["competency"].apply(lambda s: list(s.head(k)))


def need_statement(row: pd.Series, names: dict[str, str]) -> str:
    """A short Chinese sentence a teacher or trainer can read (需求陈述)."""
    parts = [f"职业阶段：{CAREER_STAGE_ZH.get(row['career_stage'], '未知')}"]
    gaps = [names.get(c, c) for c in row["top_gaps"]]
    parts.append("优先提升：" + "、".join(f"「{g}」" for g in gaps) if gaps else "各项能力均已达到目标水平")
    if row["hours_owed"] > 0:
        parts.append(f"本周期尚需 {row['hours_owed']:.0f} 学时")
    if row["missing_mandatory"]:
        parts.append("待完成必修专题：" + "、".join(row["missing_mandatory"]))
    if not row["assessed"]:
        parts.append("尚无测评记录，能力估计参照同类教师")
    return "；".join(parts) + "。"


def build_portraits(
    tables: Tables, policy: Policy, asof: pd.Timestamp, target_level: float = 70.0, seed: int = 0
) -> tuple[Portraits, MIRT | None]:
    """Teacher portraits as of `asof` under `policy`; also returns the fitted IRT model (for the bundle).

    `tables.courses` should carry every course's competencies, inferred ones included, so that hours count
    towards their domain."""
    t = tables.teachers.copy()
    t["career_stage"] = career_stage(t)
    codes = tables.taxonomy["code"].astype(str).tolist()
    comp, irt = estimate_competencies(t, tables.items, tables.responses, tables.scores, codes, asof, seed)
    comp = add_gaps(comp, t, target_level)
    years = sorted({1, 3, 5, policy.cycle_years, policy.it_years})
    hist = history_features(t, tables.records, tables.courses, tables.taxonomy, asof, windows=years)
    owed = hours_owed(hist, policy, asof, stages=t["stage"])
    cols = [c for c in TEACHER_COLUMNS if c in t.columns]
    rows = t[[*cols, "career_stage"]].merge(hist, on="teacher_id", how="left").merge(owed, on="teacher_id")
    rows["top_gaps"] = (
        rows["teacher_id"].map(top_gaps(comp)).apply(lambda v: v if isinstance(v, list) else [])
    )
    assessed = comp.loc[~comp["is_prior"], "teacher_id"].unique()
    rows["assessed"] = rows["teacher_id"].isin(assessed)
    rows["hours_required"] = float(policy.cycle_hours)
    names = dict(zip(tables.taxonomy["code"], tables.taxonomy["name"], strict=True))
    rows["need_statement"] = rows.apply(need_statement, axis=1, names=names)
    return Portraits(rows.reset_index(drop=True), comp), irt
