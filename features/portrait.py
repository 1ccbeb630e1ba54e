"""Teacher portraits (教师数字画像): competencies with uncertainty, training history, hours owed, top gaps.

`build_portraits(tables, policy, asof)` is the stage's pure heart: normalised tables in, two DataFrames out (one
row per teacher, and teacher × competency in long form), written under WS/portraits/ by `tdr train`. It runs in
two passes that a province runs block by block (`recommender.portraits`): `measure_block` (item scores, fusion,
history: nothing another teacher changes), then, once the `Population` sums of every block give the province's
`Norms` (cold-start priors, peer means, format taste), `finish_block`. Item parameters and the scale link are
calibrated once, on a sample of teachers (`features.diagnostics.calibrate`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.policy import Policy
from features.diagnostics import (
    PEER_GROUP,
    Calibration,
    add_peer_sums,
    calibrate,
    calibration_sample,
    fill_priors,
    measure,
    peer_groups,
    peer_sums,
    prior_table,
    with_priors,
)
from features.history import (
    CAREER_STAGE_ZH,
    career_stage,
    format_hours,
    format_shares,
    history_features,
    hours_owed,
)
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


# the dated columns whose latest date sets the portrait date (`as_of`), by contract table
DATED_COLUMNS = {
    "training_records": ("start_date", "end_date"),
    "responses": ("taken_at",),
    "competency_scores": ("taken_at",),
}


def as_of(latest: Iterable[pd.Timestamp | None]) -> pd.Timestamp:
    """The portrait date: the day after the latest of the data's dated events (`latest`: the latest date of each
    of DATED_COLUMNS, None or NaT where it has none), so deterministic for a data set."""
    dates = [pd.Timestamp(d) for d in latest if d is not None and not pd.isna(d)]
    return (max(dates) if dates else pd.Timestamp("2025-01-01")).normalize() + pd.Timedelta(days=1)


def history_windows(policy: Policy) -> list[int]:
    """The history windows (years) a portrait needs: 1, 3, 5 and the policy's cycles."""
    return sorted({1, 3, 5, policy.cycle_years, policy.it_years})


@dataclass(frozen=True)
class Measured:
    """A block of teachers after the first pass: their rows (with career stage), measured competencies and
    training history."""

    teachers: pd.DataFrame
    measured: pd.DataFrame
    history: pd.DataFrame


@dataclass(frozen=True)
class Population:
    """Sums over teachers that portraits are read against, added up over the blocks of a province: the peer
    sums of measured estimates (`peer_sums`), teachers per peer group, completed hours by format."""

    sums: pd.DataFrame
    counts: pd.DataFrame
    format_hours: np.ndarray

    def __add__(self, other: Population) -> Population:
        counts = pd.concat([self.counts, other.counts], ignore_index=True)
        return Population(
            add_peer_sums(self.sums, other.sums),
            counts.groupby(list(PEER_GROUP), as_index=False)[["n"]].sum(),
            self.format_hours + other.format_hours,
        )


@dataclass(frozen=True)
class Norms:
    """What a province's portraits are read against, from its Population: the cold-start estimate of each peer
    group and competency (`prior_table`), the peer mean of each stage × subject × competency (everybody's
    estimates, priors included), and the hours by format that format taste is pulled toward."""

    priors: pd.DataFrame
    peer_mean: pd.DataFrame
    format_hours: np.ndarray


def measure_block(tables: Tables, cal: Calibration, policy: Policy, asof: pd.Timestamp) -> Measured:
    """First pass over a block of teachers (`tables` holding their rows only, or more): what needs no other
    block. `tables.courses` should carry every course's competencies, inferred ones included, so that hours
    count towards their domain."""
    t = tables.teachers.reset_index(drop=True)
    t = t.assign(career_stage=career_stage(t))
    measured = measure(cal, tables.responses, tables.scores, asof)
    measured = measured[measured["teacher_id"].isin(t["teacher_id"].astype(str))].reset_index(drop=True)
    hist = history_features(
        t, tables.records, tables.courses, tables.taxonomy, asof, windows=history_windows(policy)
    )
    return Measured(t, measured, hist)


def population(m: Measured, policy: Policy) -> Population:
    groups = peer_groups(m.teachers)
    counts = groups.groupby(list(PEER_GROUP), as_index=False).size().rename(columns={"size": "n"})
    hours = format_hours(m.history, max(history_windows(policy))).sum(axis=0)
    return Population(peer_sums(m.measured, groups), counts, hours)


def norms(pop: Population, codes: list[str]) -> Norms:
    """The province's norms. A peer mean counts every teacher: the measured through their sums, the others at
    their group's prior (`Population.counts` less the measured)."""
    priors = prior_table(pop.sums, pop.counts, codes)
    key = [*PEER_GROUP, "competency"]
    cells = priors.merge(pop.counts, on=list(PEER_GROUP)).merge(
        pop.sums[[*key, "n", "total"]].rename(columns={"n": "measured"}), on=key, how="left"
    )
    measured = cells["measured"].fillna(0).to_numpy(dtype=np.float64)
    teachers = cells["n"].to_numpy(dtype=np.float64)
    cells = cells.assign(
        all=cells["total"].fillna(0.0).to_numpy(dtype=np.float64)
        + (teachers - measured) * cells["estimate"].to_numpy(dtype=np.float64)
    )
    by = cells.groupby(["stage", "subject", "competency"], as_index=False)[["all", "n"]].sum()
    peer_mean = by[["stage", "subject", "competency"]].assign(peer_mean=by["all"] / by["n"])
    return Norms(priors, peer_mean, pop.format_hours)


def add_gaps(
    competencies: pd.DataFrame, groups: pd.DataFrame, peer_mean: pd.DataFrame, target_level: float
) -> pd.DataFrame:
    """Peer mean (same stage × subject, from `norms`) and gap to the target level for every teacher ×
    competency."""
    c = competencies[["teacher_id", "competency"]].merge(groups, on="teacher_id", how="left")
    peer = c.merge(peer_mean, on=["stage", "subject", "competency"], how="left")["peer_mean"]
    return competencies.assign(
        peer_mean=peer.to_numpy(), gap=np.clip(target_level - competencies["estimate"].to_numpy(), 0.0, None)
    )


def top_gaps(competencies: pd.DataFrame, k: int = TOP_GAPS) -> pd.Series:
    """Each teacher's k competencies with the largest gap, weighted toward gaps below peers. Weights equal to
    1e-9 points tie, and ties go in competency order (float noise in a peer mean reorders nothing)."""
    c = competencies[competencies["gap"] > 0]
    key = np.round(c["gap"] + 0.5 * (c["peer_mean"] - c["estimate"]), 9)
    c = c.assign(_key=key).sort_values(
        ["teacher_id", "_key", "competency"], ascending=[True, False, True], kind="stable"
    )
    c = c[c.groupby("teacher_id", sort=False).cumcount().to_numpy() < k]
    ids = c["teacher_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, dtype=np.int64)
    codes = c["competency"].to_numpy(dtype=object)
    lists = [list(part) for part in np.split(codes, starts[1:])] if len(ids) else []
    return pd.Series(lists, index=pd.Index(ids[starts], name="teacher_id"), name="competency", dtype=object)


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


def finish_block(
    m: Measured, nm: Norms, policy: Policy, asof: pd.Timestamp, taxonomy: pd.DataFrame, target_level: float
) -> Portraits:
    """Second pass over a block: its teachers' portraits, read against the province's norms."""
    codes = taxonomy["code"].astype(str).tolist()
    groups = peer_groups(m.teachers)
    comp = with_priors(
        m.measured, fill_priors(m.measured, groups, nm.priors, codes), m.teachers["teacher_id"]
    )
    comp = add_gaps(comp, groups, nm.peer_mean, target_level)
    hist = m.history.assign(
        **format_shares(format_hours(m.history, max(history_windows(policy))), nm.format_hours)
    )
    owed = hours_owed(hist, policy, asof, stages=m.teachers["stage"])
    cols = [c for c in TEACHER_COLUMNS if c in m.teachers.columns]
    rows = m.teachers[[*cols, "career_stage"]].merge(hist, on="teacher_id", how="left")
    rows = rows.merge(owed, on="teacher_id")
    rows["top_gaps"] = (
        rows["teacher_id"].map(top_gaps(comp)).apply(lambda v: v if isinstance(v, list) else [])
    )
    assessed = comp.loc[~comp["is_prior"], "teacher_id"].unique()
    rows["assessed"] = rows["teacher_id"].isin(assessed)
    rows["hours_required"] = float(policy.cycle_hours)
    names = dict(zip(taxonomy["code"], taxonomy["name"], strict=True))
    rows["need_statement"] = rows.apply(need_statement, axis=1, names=names)
    return Portraits(rows.reset_index(drop=True), comp)


def calibrate_on(tables: Tables, sample: np.ndarray, asof: pd.Timestamp, seed: int = 0) -> Calibration:
    """The province's calibration from the responses and scores of `sample` (see `calibration_sample`) found in
    `tables` (which may hold those teachers' rows only)."""

    def of_sample(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["teacher_id"].astype(str).isin(sample)] if len(frame) else frame

    codes = tables.taxonomy["code"].astype(str).tolist()
    return calibrate(tables.items, of_sample(tables.responses), of_sample(tables.scores), codes, asof, seed)


def build_portraits(
    tables: Tables, policy: Policy, asof: pd.Timestamp, target_level: float = 70.0, seed: int = 0
) -> tuple[Portraits, MIRT | None]:
    """Teacher portraits as of `asof` under `policy`, all teachers in memory as one block (a province is
    built in blocks by `recommender.portraits`, with the same functions); also returns the IRT model.

    `tables.courses` should carry every course's competencies, inferred ones included, so that hours count
    towards their domain."""
    cal = calibrate_on(tables, calibration_sample(tables.teachers["teacher_id"], seed), asof, seed)
    m = measure_block(tables, cal, policy, asof)
    codes = tables.taxonomy["code"].astype(str).tolist()
    return finish_block(
        m, norms(population(m, policy), codes), policy, asof, tables.taxonomy, target_level
    ), cal.model
