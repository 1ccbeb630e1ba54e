"""Diagnostics → competencies (能力诊断): per teacher and competency, an estimate with its standard error.

Item responses go through the multidimensional IRT model; scale-level scores (test, observation, self) are
fused with them by precision, with self-ratings corrected for their typical bias; teachers never assessed get
the estimate of their peers, flagged as a prior with a wide standard error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.irt import MIRT

# display scale: estimate = CENTRE + SCALE * theta, clipped to [0, 100]
CENTRE = 50.0
SCALE = 15.0
# measurement error (display points) of one scale-level score, by source: a self-rating counts least
SOURCE_SD = {"test": 8.0, "observation": 11.0, "self": 18.0}
# an old score counts less: its variance grows by this share per year of age
AGE_VARIANCE_PER_YEAR = 0.5
# peers used for the cold-start prior must number at least this; otherwise a broader group is used
MIN_PEERS = 5
PEER_KEYS = (("stage", "subject", "career_stage"), ("stage", "subject"), ("stage",), ())


@dataclass(frozen=True)
class ItemEstimates:
    """Item-based estimates on the display scale: (teacher_id, competency, estimate, std_error)."""

    table: pd.DataFrame
    model: MIRT | None


def to_display(theta: np.ndarray) -> np.ndarray:
    return np.clip(CENTRE + SCALE * np.asarray(theta, dtype=np.float64), 0.0, 100.0)


def item_estimates(
    items: pd.DataFrame, responses: pd.DataFrame, codes: list[str], seed: int = 0
) -> ItemEstimates:
    """Fit the IRT model on all responses and return every responding teacher's estimates."""
    empty = pd.DataFrame(columns=["teacher_id", "competency", "estimate", "std_error"])
    if responses.empty or items.empty:
        return ItemEstimates(empty, None)
    code_pos = {c: k for k, c in enumerate(codes)}
    item_ids = items["item_id"].astype(str).to_numpy()
    q = np.zeros((len(item_ids), len(codes)), dtype=bool)
    for j, comps in enumerate(items["competencies"]):
        for c in comps:
            if c in code_pos:
                q[j, code_pos[c]] = True
    max_score = items["max_score"].fillna(1.0).to_numpy(dtype=np.float64)
    item_pos = pd.Series(np.arange(len(item_ids)), index=item_ids)
    r = responses.dropna(subset=["score"])
    # a teacher answering the same item twice: the latest answer counts
    if "taken_at" in r.columns:
        r = r.sort_values("taken_at", kind="stable")
    r = r.drop_duplicates(["teacher_id", "item_id"], keep="last")
    j = r["item_id"].astype(str).map(item_pos).to_numpy(dtype=np.int64)
    teachers = pd.Index(np.sort(r["teacher_id"].astype(str).unique()))
    person = teachers.get_indexer(r["teacher_id"].astype(str))
    score01 = np.clip(r["score"].to_numpy(dtype=np.float64) / max_score[j], 0.0, 1.0)
    model = MIRT(random_state=seed).fit_long(person, j, score01, len(teachers), q)
    measured = q.any(axis=0)
    theta, se = model.theta_, model.se_
    n, k = theta.shape
    table = pd.DataFrame(
        {
            "teacher_id": np.repeat(teachers.to_numpy(), k),
            "competency": np.tile(np.asarray(codes), n),
            "estimate": to_display(theta).ravel(),
            "std_error": (SCALE * se).ravel(),
            "measured": np.tile(measured, n),
        }
    )
    return ItemEstimates(table[table["measured"]].drop(columns="measured").reset_index(drop=True), model)


def self_bias(scores: pd.DataFrame, anchor: pd.DataFrame) -> float:
    """Typical inflation of self-ratings: mean (self − anchor) over teachers with both, else versus others."""
    self_r = scores[scores["source"] == "self"]
    if self_r.empty:
        return 0.0
    both = self_r.merge(anchor, on=["teacher_id", "competency"], how="inner")
    if len(both) >= MIN_PEERS:
        return float((both["score"] - both["estimate"]).mean())
    others = scores[scores["source"] != "self"]
    if len(others) >= MIN_PEERS:
        return float(self_r["score"].mean() - others["score"].mean())
    return 0.0


def fuse(item_table: pd.DataFrame, scores: pd.DataFrame, asof: pd.Timestamp) -> pd.DataFrame:
    """Precision-weighted fusion of item-based estimates with scale-level scores (latest score per source).

    Returns (teacher_id, competency, estimate, std_error, source) with source items / scores / fused.
    """
    cols = ["teacher_id", "competency", "estimate", "std_error", "source"]
    s = scores.dropna(subset=["score"]).copy()
    if s.empty:
        return item_table.assign(source="items")[cols]
    s = s.sort_values("taken_at", kind="stable").drop_duplicates(
        ["teacher_id", "competency", "source"], keep="last"
    )
    bias = self_bias(s, item_table)
    is_self = s["source"] == "self"
    s.loc[is_self, "score"] = s.loc[is_self, "score"] - bias
    age_years = ((asof - s["taken_at"]).dt.days.clip(lower=0) / 365.25).fillna(1.0)
    var = s["source"].map(SOURCE_SD).fillna(SOURCE_SD["self"]) ** 2 * (1 + AGE_VARIANCE_PER_YEAR * age_years)
    s = s.assign(w=1.0 / var, wx=s["score"] / var)
    agg = s.groupby(["teacher_id", "competency"], sort=True)[["w", "wx"]].sum()
    it = item_table.set_index(["teacher_id", "competency"])
    w_it = 1.0 / it["std_error"].clip(lower=1e-6) ** 2
    both = pd.concat({"w_it": w_it, "x_it": it["estimate"], "w_s": agg["w"], "wx_s": agg["wx"]}, axis=1)
    has_it, has_s = both["w_it"].notna(), both["w_s"].notna()
    w = both["w_it"].fillna(0) + both["w_s"].fillna(0)
    x = (both["w_it"].fillna(0) * both["x_it"].fillna(0) + both["wx_s"].fillna(0)) / w
    out = pd.DataFrame(
        {
            "estimate": x.clip(0, 100),
            "std_error": np.sqrt(1.0 / w),
            "source": np.where(has_it & has_s, "fused", np.where(has_it, "items", "scores")),
        },
        index=both.index,
    ).reset_index()
    return out[cols]


def peer_priors(measured: pd.DataFrame, teachers: pd.DataFrame, codes: list[str]) -> pd.DataFrame:
    """Cold-start estimates: the mean of peers (same stage, subject, career stage; broader when few), with the
    peers' spread as standard error. Rows for every (teacher, competency) not in `measured`."""
    meta = teachers[["teacher_id", "stage", "subject", "career_stage"]].astype(str)
    m = measured.merge(meta, on="teacher_id", how="inner")
    grid = meta.merge(pd.DataFrame({"competency": codes}), how="cross")
    have = measured[["teacher_id", "competency"]].assign(_have=True)
    grid = grid.merge(have, on=["teacher_id", "competency"], how="left")
    grid = grid[grid["_have"].isna()].drop(columns="_have")
    grid["estimate"] = np.nan
    grid["std_error"] = np.nan
    overall_sd = float(m["estimate"].std()) if len(m) > 1 else SCALE
    for keys in PEER_KEYS:
        by = [*keys, "competency"]
        stats = m.groupby(by)["estimate"].agg(["mean", "std", "count"]).reset_index()
        stats = stats[stats["count"] >= MIN_PEERS]
        todo = grid["estimate"].isna()
        if not todo.any():
            break
        filled = grid.loc[todo, by].merge(stats, on=by, how="left")
        grid.loc[todo, "estimate"] = filled["mean"].to_numpy()
        # the prior's standard error: the peers' spread (never narrower than the overall spread)
        grid.loc[todo, "std_error"] = np.maximum(filled["std"].fillna(overall_sd).to_numpy(), overall_sd)
    grid["estimate"] = grid["estimate"].fillna(CENTRE)
    grid["std_error"] = grid["std_error"].fillna(max(overall_sd, SCALE))
    return grid[["teacher_id", "competency", "estimate", "std_error"]].assign(source="prior")


def estimate_competencies(
    teachers: pd.DataFrame,
    items: pd.DataFrame,
    responses: pd.DataFrame,
    scores: pd.DataFrame,
    codes: list[str],
    asof: pd.Timestamp,
    seed: int = 0,
) -> tuple[pd.DataFrame, MIRT | None]:
    """All teachers × competencies: estimate (0–100), std_error, source, is_prior. `teachers` must carry
    career_stage."""
    items_est = item_estimates(items, responses, codes, seed)
    measured = fuse(items_est.table, scores, asof)
    priors = peer_priors(measured, teachers, codes)
    out = pd.concat([measured, priors], ignore_index=True)
    out["is_prior"] = out["source"] == "prior"
    out = out[out["teacher_id"].isin(teachers["teacher_id"].astype(str))]
    return out.sort_values(["teacher_id", "competency"], kind="stable").reset_index(
        drop=True
    ), items_est.model
