"""Diagnostics → competencies (能力诊断): per teacher and competency, an estimate with its standard error.

Item responses go through the multidimensional IRT model; its scale is linked to the 0–100 scale of the
scale-level scores (test, observation, self), which are then fused with it by precision and recency, with
self-ratings corrected for their typical bias; teachers never assessed get the estimate of their peers,
flagged as a prior with a wide standard error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from models.irt import MIRT

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# display scale: estimate = CENTRE + SCALE * theta, clipped to [0, 100]
CENTRE = 50.0
SCALE = 15.0
# measurement error (display points) of one scale-level score, by source: a self-rating counts least
SOURCE_SD = {"test": 8.0, "observation": 11.0, "self": 18.0}
# an older measurement counts less than a newer one of the same teacher and competency: its variance grows by
# this share per year it predates the newest; capped so that even an old test outweighs a fresh self-rating
AGE_VARIANCE_PER_YEAR = 0.5
MAX_AGE_YEARS = 3.0
# scale linking: prior spread of a competency's intercept (display points) and slope around (CENTRE, 1), and
# of the self-rating bias around 0; the data dominate once a competency has a few dozen linked scores
LINK_INTERCEPT_SD = 10.0
LINK_SLOPE_SD = 0.25
SELF_BIAS_SD = 15.0
# peers used for the cold-start prior must number at least this; otherwise a broader group is used
MIN_PEERS = 5
PEER_GROUP = ("stage", "subject", "career_stage")
PEER_KEYS = (PEER_GROUP, ("stage", "subject"), ("stage",), ())
_SUMS = ("n", "total", "squares", "se2")

# teachers whose responses and scores calibrate the items and the scale link (all of them in a smaller province)
CALIBRATION_TEACHERS = 20_000
# whether the portrait's IRT model has a general dimension every item loads on (measured with
# bench.portrait_recovery: see that module and the README)
GENERAL_FACTOR = False
# the rank of the portrait model's competency correlations (models.irt.MIRT corr_rank; None: a full matrix),
# chosen the same way
CORR_RANK: int | None = None

_FUSED_COLUMNS = ["teacher_id", "competency", "estimate", "std_error", "source"]
_YEAR_DAYS = 365.25


@dataclass(frozen=True)
class ItemEstimates:
    """Item-based estimates on the display scale: (teacher_id, competency, estimate, std_error) and the date of
    each teacher's latest response (`taken_at`, indexed by teacher_id; empty when undated)."""

    table: pd.DataFrame
    taken_at: pd.Series


@dataclass(frozen=True)
class ScaleLink:
    """From the IRT display scale to the scale the scores are on, per competency:
    linked = intercept + slope * (estimate − CENTRE); and the typical inflation of self-ratings."""

    intercept: pd.Series
    slope: pd.Series
    self_bias: float

    def apply(self, table: pd.DataFrame) -> pd.DataFrame:
        b0 = table["competency"].map(self.intercept).fillna(CENTRE).to_numpy(dtype=np.float64)
        b1 = table["competency"].map(self.slope).fillna(1.0).to_numpy(dtype=np.float64)
        x = table["estimate"].to_numpy(dtype=np.float64)
        return table.assign(
            estimate=np.clip(b0 + b1 * (x - CENTRE), 0.0, 100.0),
            std_error=b1 * table["std_error"].to_numpy(dtype=np.float64),
        )


@dataclass(frozen=True)
class Calibration:
    """What the diagnostics fit once per province (`calibrate`) and apply to every teacher alike: the IRT model
    (None without usable responses), the row of each item it kept and its maximum score, the competency of each
    of its dimensions, and the link from its scale to the scores' (None without scores to link to)."""

    model: MIRT | None
    item_pos: pd.Series
    max_score: FloatArray
    dims: NDArray[np.str_]
    link: ScaleLink | None


_EMPTY_ITEMS = pd.DataFrame(
    {
        "teacher_id": pd.Series(dtype=str),
        "competency": pd.Series(dtype=str),
        "estimate": pd.Series(dtype=np.float64),
        "std_error": pd.Series(dtype=np.float64),
    }
)


def to_display(theta: ArrayLike) -> FloatArray:
    return np.clip(CENTRE + SCALE * np.asarray(theta, dtype=np.float64), 0.0, 100.0)


def calibration_sample(
    teacher_ids: ArrayLike, seed: int = 0, size: int = CALIBRATION_TEACHERS
) -> NDArray[np.str_]:
    """The teachers (sorted ids) whose data calibrate the province: all of them up to `size`, else a seeded
    sample of `size` (item parameters and the scale link are population quantities: a large sample pins them
    down, and every teacher is then measured with the same instrument)."""
    ids = np.sort(np.unique(np.asarray(teacher_ids).astype(str)))
    if len(ids) <= size:
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, size=size, replace=False))


def _design(items: pd.DataFrame, codes: list[str]) -> tuple[pd.DataFrame, BoolArray, NDArray[np.str_]]:
    """The items measuring some of `codes`, their Q-matrix over the competencies some item measures (the others
    would be pure prior and cost K² each), and those competencies."""
    code_pos = {c: k for k, c in enumerate(codes)}
    q = np.zeros((len(items), len(codes)), dtype=bool)
    for row, comps in enumerate(items["competencies"]):
        for c in comps:
            if c in code_pos:
                q[row, code_pos[c]] = True
    measured = np.flatnonzero(q.any(axis=0))
    keep = q.any(axis=1)
    return (
        items.iloc[np.flatnonzero(keep)].reset_index(drop=True),
        q[keep][:, measured],
        np.asarray(codes)[measured],
    )


@dataclass(frozen=True)
class _Answers:
    """Responses to the calibrated items, the latest per teacher and item, as model inputs."""

    teachers: pd.Index
    person: IntArray
    item: IntArray
    score01: FloatArray
    taken_at: pd.Series


def _answers(item_pos: pd.Series, max_score: FloatArray, responses: pd.DataFrame) -> _Answers:
    r = responses.dropna(subset=["score"])
    r = r[r["item_id"].astype(str).isin(item_pos.index)]
    # a teacher answering the same item twice: the latest answer counts
    if "taken_at" in r.columns:
        r = r.sort_values("taken_at", kind="stable")
    r = r.drop_duplicates(["teacher_id", "item_id"], keep="last")
    j = r["item_id"].astype(str).map(item_pos).to_numpy(dtype=np.int64)
    tid = r["teacher_id"].astype(str)
    teachers = pd.Index(np.sort(tid.unique()))
    taken_at = (
        pd.to_datetime(r["taken_at"]).groupby(tid.to_numpy()).max()
        if "taken_at" in r.columns
        else pd.Series(dtype="datetime64[ns]")
    )
    score01 = np.clip(r["score"].to_numpy(dtype=np.float64) / max_score[j], 0.0, 1.0)
    return _Answers(teachers, teachers.get_indexer(tid), j, score01, taken_at)


def _table(teachers: pd.Index, dims: NDArray[np.str_], theta: FloatArray, se: FloatArray) -> pd.DataFrame:
    n, k = theta.shape
    return pd.DataFrame(
        {
            "teacher_id": np.repeat(teachers.to_numpy(), k),
            "competency": np.tile(dims, n),
            "estimate": to_display(theta).ravel(),
            "std_error": (SCALE * se).ravel(),
        }
    )


def _fit(
    items: pd.DataFrame, responses: pd.DataFrame, codes: list[str], seed: int
) -> tuple[MIRT, pd.Series, FloatArray, NDArray[np.str_], pd.DataFrame] | None:
    """The IRT model fitted on `responses`, the row of each item it kept and its maximum score, the competency
    of each dimension and the respondents' estimates; None without usable responses."""
    if responses.empty or items.empty:
        return None
    kept, q, dims = _design(items, codes)
    if kept.empty:
        return None
    item_pos = pd.Series(np.arange(len(kept)), index=kept["item_id"].astype(str).to_numpy())
    max_score = kept["max_score"].fillna(1.0).to_numpy(dtype=np.float64)
    a = _answers(item_pos, max_score, responses)
    if not len(a.teachers):
        return None
    # partial-credit items: the model weighs their scores by how little they scatter (estimated dispersion)
    model = MIRT(dispersion=True, general_factor=GENERAL_FACTOR, corr_rank=CORR_RANK, random_state=seed)
    model.fit_long(a.person, a.item, a.score01, len(a.teachers), q)
    return model, item_pos, max_score, dims, _table(a.teachers, dims, *model.per_competency())


def calibrate(
    items: pd.DataFrame,
    responses: pd.DataFrame,
    scores: pd.DataFrame,
    codes: list[str],
    asof: pd.Timestamp,
    seed: int = 0,
) -> Calibration:
    """Fit the IRT model on the calibration sample's responses and link its scale to their scores (dated up to
    `asof`); items measuring none of `codes` are left out."""
    s = latest_scores(dated_upto(scores, asof))
    fit = _fit(items, responses, codes, seed)
    if fit is None:
        link = link_scales(_EMPTY_ITEMS, s) if len(s) else None
        return Calibration(None, pd.Series(dtype=np.int64), np.zeros(0), np.asarray([], dtype=str), link)
    model, item_pos, max_score, dims, table = fit
    link = link_scales(table, s) if len(s) else None
    return Calibration(model.items_only(), item_pos, max_score, dims, link)


def item_estimates(cal: Calibration, responses: pd.DataFrame) -> ItemEstimates:
    """Every responding teacher's item-based estimates under the calibrated items (posterior mode and
    standard error, the items held fixed)."""
    if cal.model is None or responses.empty:
        return ItemEstimates(_EMPTY_ITEMS, pd.Series(dtype="datetime64[ns]"))
    a = _answers(cal.item_pos, cal.max_score, responses)
    if not len(a.teachers):
        return ItemEstimates(_EMPTY_ITEMS, a.taken_at)
    post = cal.model.posterior_long(a.person, a.item, a.score01, len(a.teachers))
    theta, se = cal.model.per_competency(post)
    return ItemEstimates(_table(a.teachers, cal.dims, theta, se), a.taken_at)


def dated_upto(scores: pd.DataFrame, asof: pd.Timestamp) -> pd.DataFrame:
    """The scores taken up to `asof` (undated ones count as current)."""
    return scores[scores["taken_at"].isna() | (scores["taken_at"] <= asof)]


def latest_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """The latest score per teacher, competency and source, with teacher_id and competency as str."""
    s = scores.dropna(subset=["score"])
    s = s.assign(teacher_id=s["teacher_id"].astype(str), competency=s["competency"].astype(str))
    s = s.sort_values("taken_at", kind="stable")
    return s.drop_duplicates(["teacher_id", "competency", "source"], keep="last").reset_index(drop=True)


def _source_sd(source: pd.Series) -> FloatArray:
    return np.asarray(source.map(SOURCE_SD).fillna(SOURCE_SD["self"]), dtype=np.float64)


def link_scales(item_table: pd.DataFrame, scores: pd.DataFrame) -> ScaleLink:
    """Per competency, the linear map from the IRT scale to the 0–100 score scale, and the self-rating bias.

    The IRT model fixes each competency's population mean at 0 and spread at 1: only the scores say where on
    0–100 a competency's teachers stand. Regressing each score on the item-based estimate of the same teacher
    and competency (a posterior mean, so the regression is unbiased) gives the intercept and slope; a shared
    offset on self-ratings, identified where tests or observations are there too, is their bias. Weighted
    least squares with weak priors at (CENTRE, 1, 0), so a competency with few scores keeps the plain scale.
    """
    competencies = pd.Index(np.sort(item_table["competency"].astype(str).unique()))
    identity = ScaleLink(
        pd.Series(CENTRE, index=competencies), pd.Series(1.0, index=competencies), _unanchored_bias(scores)
    )
    rows = scores.merge(item_table, on=["teacher_id", "competency"], how="inner", suffixes=("", "_item"))
    if rows.empty:
        return identity
    k = len(competencies)
    comp = competencies.get_indexer(rows["competency"])
    x = rows["estimate"].to_numpy(dtype=np.float64) - CENTRE
    se = rows["std_error"].to_numpy(dtype=np.float64)
    y = rows["score"].to_numpy(dtype=np.float64)
    own = np.asarray(rows["source"] == "self", dtype=np.float64)
    sd = _source_sd(rows["source"])
    # normal equations of weighted least squares in (intercepts, slopes, bias), built per competency
    prior_mean = np.concatenate([np.full(k, CENTRE), np.ones(k), [0.0]])
    prior_prec = np.concatenate(
        [np.full(k, LINK_INTERCEPT_SD**-2), np.full(k, LINK_SLOPE_SD**-2), [SELF_BIAS_SD**-2]]
    )
    slope = np.ones(k)
    beta = prior_mean
    for _ in range(3):
        # a score's residual around the line also carries the item estimate's own error, scaled by the slope
        w = 1.0 / (sd**2 + (slope[comp] * se) ** 2)

        def total(v: FloatArray, w: FloatArray = w) -> FloatArray:
            return np.asarray(np.bincount(comp, w * v, minlength=k), dtype=np.float64)

        one = np.ones_like(x)
        lhs = np.diag(prior_prec)
        lhs[:k, :k] += np.diag(total(one))
        lhs[k : 2 * k, k : 2 * k] += np.diag(total(x * x))
        lhs[:k, k : 2 * k] += np.diag(total(x))
        lhs[k : 2 * k, :k] += np.diag(total(x))
        lhs[:k, -1] = lhs[-1, :k] = total(own)
        lhs[k : 2 * k, -1] = lhs[-1, k : 2 * k] = total(x * own)
        lhs[-1, -1] += float(np.sum(w * own))
        rhs = prior_prec * prior_mean + np.concatenate([total(y), total(x * y), [float(np.sum(w * own * y))]])
        beta = np.linalg.solve(lhs, rhs)
        slope = np.maximum(beta[k : 2 * k], 0.05)
    return ScaleLink(
        pd.Series(beta[:k], index=competencies), pd.Series(slope, index=competencies), float(beta[-1])
    )


def _unanchored_bias(scores: pd.DataFrame) -> float:
    """Self-rating bias without item estimates: self minus test/observation for the same teacher and
    competency, averaged; 0 when no teacher has both."""
    own = scores[scores["source"] == "self"]
    other = scores[scores["source"] != "self"].groupby(["teacher_id", "competency"])["score"].mean()
    both = own.join(other.rename("other"), on=["teacher_id", "competency"], how="inner")
    return float((both["score"] - both["other"]).mean()) if len(both) >= MIN_PEERS else 0.0


def self_bias(scores: pd.DataFrame, anchor: pd.DataFrame) -> float:
    """Typical inflation of self-ratings (display points) against the item-based `anchor` estimates and the
    other sources, as estimated by `link_scales`."""
    return link_scales(anchor, latest_scores(scores)).self_bias


def _age_weight(age_years: pd.Series | FloatArray) -> FloatArray:
    age = np.clip(np.nan_to_num(np.asarray(age_years, dtype=np.float64), nan=0.0), 0.0, MAX_AGE_YEARS)
    return 1.0 + AGE_VARIANCE_PER_YEAR * age


def fuse(
    item_table: pd.DataFrame,
    scores: pd.DataFrame,
    asof: pd.Timestamp,
    item_dates: pd.Series | None = None,
    link: ScaleLink | None = None,
) -> pd.DataFrame:
    """Precision-weighted fusion of item-based estimates with scale-level scores (latest score per source).

    Item estimates are first linked to the score scale and self-ratings corrected for their bias, by `link`
    (the province's, from `calibrate`) or else by `link_scales` on these data. Each measurement's variance grows with the years it predates the newest measurement of the same
    teacher and competency (`item_dates`: each teacher's latest response; undated measurements count as
    current). Returns (teacher_id, competency, estimate, std_error, source) with source items/scores/fused.
    """
    items = item_table.assign(
        teacher_id=item_table["teacher_id"].astype(str), competency=item_table["competency"].astype(str)
    )
    s = latest_scores(dated_upto(scores, asof))
    if link is None:
        if s.empty:
            return items.assign(source="items")[_FUSED_COLUMNS]
        link = link_scales(items, s)
    items = link.apply(items)
    s.loc[s["source"] == "self", "score"] -= link.self_bias

    dates = item_dates if item_dates is not None else pd.Series(dtype="datetime64[ns]")
    items["taken_at"] = pd.to_datetime(dates).reindex(items["teacher_id"]).to_numpy()
    key = ["teacher_id", "competency"]
    evidence = pd.concat(
        [
            items[[*key, "estimate", "taken_at"]].assign(
                var=items["std_error"].clip(lower=1e-6) ** 2, kind=0
            ),
            s[key].assign(
                estimate=s["score"], taken_at=s["taken_at"], var=_source_sd(s["source"]) ** 2, kind=1
            ),
        ],
        ignore_index=True,
    )
    taken = pd.to_datetime(evidence["taken_at"])
    newest = taken.groupby([evidence["teacher_id"], evidence["competency"]]).transform("max")
    evidence["var"] *= _age_weight((newest - taken).dt.days / _YEAR_DAYS)
    evidence["w"] = 1.0 / evidence["var"]
    evidence["wx"] = evidence["w"] * evidence["estimate"]
    evidence["from_items"] = evidence["kind"] == 0
    evidence["from_scores"] = evidence["kind"] == 1
    agg = evidence.groupby(key, sort=True).agg(
        w=("w", "sum"), wx=("wx", "sum"), from_items=("from_items", "any"), from_scores=("from_scores", "any")
    )
    source = np.where(
        agg["from_items"] & agg["from_scores"], "fused", np.where(agg["from_items"], "items", "scores")
    )
    out = pd.DataFrame(
        {
            "estimate": (agg["wx"] / agg["w"]).clip(0.0, 100.0),
            "std_error": np.sqrt(1.0 / agg["w"]),
            "source": source,
        },
        index=agg.index,
    ).reset_index()
    return out[_FUSED_COLUMNS]


def peer_groups(teachers: pd.DataFrame) -> pd.DataFrame:
    """teacher_id and the finest peer group (stage, subject, career stage) as text, blanks as "nan"."""
    return teachers[["teacher_id", *PEER_GROUP]].astype(str)


def peer_sums(measured: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Per peer group and competency: how many measured estimates, their sum and sum of squares, and the sum of
    their squared standard errors. Sums add up over blocks of teachers (`add_peer_sums`)."""
    m = measured.merge(groups, on="teacher_id", how="inner")
    x = m["estimate"].to_numpy(dtype=np.float64)
    m = m.assign(n=1, total=x, squares=x * x, se2=m["std_error"].to_numpy(dtype=np.float64) ** 2)
    return m.groupby([*PEER_GROUP, "competency"], as_index=False)[list(_SUMS)].sum()


def add_peer_sums(*parts: pd.DataFrame) -> pd.DataFrame:
    return (
        pd.concat(parts, ignore_index=True)
        .groupby([*PEER_GROUP, "competency"], as_index=False)[list(_SUMS)]
        .sum()
    )


def prior_table(sums: pd.DataFrame, groups: pd.DataFrame, codes: list[str]) -> pd.DataFrame:
    """Cold-start estimate of every (peer group of `groups`, competency of `codes`): the mean of peers (same
    stage, subject, career stage; broader when fewer than MIN_PEERS), with the peers' true spread as standard
    error (estimates are shrunk posterior means: the spread adds back their own uncertainty)."""
    grid = groups[list(PEER_GROUP)].drop_duplicates().merge(pd.DataFrame({"competency": codes}), how="cross")
    grid["estimate"] = np.nan
    grid["std_error"] = np.nan
    for keys in PEER_KEYS:
        by = [*keys, "competency"]
        todo = grid["estimate"].isna()
        if not todo.any():
            break
        stats = sums.groupby(by, as_index=False)[list(_SUMS)].sum()
        stats = stats[stats["n"] >= MIN_PEERS]
        n = stats["n"].to_numpy(dtype=np.float64)
        total = stats["total"].to_numpy(dtype=np.float64)
        var = np.maximum(stats["squares"].to_numpy(dtype=np.float64) - total * total / n, 0.0) / (n - 1.0)
        stats = stats[by].assign(
            mean=total / n, sd=np.sqrt(var + stats["se2"].to_numpy(dtype=np.float64) / n)
        )
        filled = grid.loc[todo, by].merge(stats, on=by, how="left")
        grid.loc[todo, "estimate"] = filled["mean"].to_numpy()
        grid.loc[todo, "std_error"] = filled["sd"].to_numpy()
    grid["estimate"] = grid["estimate"].fillna(CENTRE)
    grid["std_error"] = grid["std_error"].fillna(2.0 * SCALE)
    return grid


def fill_priors(
    measured: pd.DataFrame, groups: pd.DataFrame, table: pd.DataFrame, codes: list[str]
) -> pd.DataFrame:
    """Prior rows (from `prior_table`) for every teacher of `groups` × competency of `codes` not in `measured`."""
    grid = groups.merge(pd.DataFrame({"competency": codes}), how="cross")
    have = measured[["teacher_id", "competency"]].assign(_have=True)
    grid = grid.merge(have, on=["teacher_id", "competency"], how="left")
    grid = grid[grid["_have"].isna()].drop(columns="_have")
    grid = grid.merge(table, on=[*PEER_GROUP, "competency"], how="left")
    return (
        grid[["teacher_id", "competency", "estimate", "std_error"]]
        .assign(source="prior")
        .reset_index(drop=True)
    )


def peer_priors(measured: pd.DataFrame, teachers: pd.DataFrame, codes: list[str]) -> pd.DataFrame:
    """Cold-start estimates of `teachers` (carrying career_stage) from the `measured` among them (see
    `prior_table`): rows for every (teacher, competency) not in `measured`."""
    groups = peer_groups(teachers)
    table = prior_table(peer_sums(measured, groups), groups, codes)
    return fill_priors(measured, groups, table, codes)


def with_priors(measured: pd.DataFrame, priors: pd.DataFrame, teacher_ids: pd.Series) -> pd.DataFrame:
    """Measured and prior rows of the given teachers, sorted: estimate (0–100), std_error, source, is_prior."""
    out = pd.concat([measured, priors], ignore_index=True)
    out["is_prior"] = out["source"] == "prior"
    out = out[out["teacher_id"].isin(teacher_ids.astype(str))]
    return out.sort_values(["teacher_id", "competency"], kind="stable").reset_index(drop=True)


def estimate_competencies(
    teachers: pd.DataFrame,
    items: pd.DataFrame,
    responses: pd.DataFrame,
    scores: pd.DataFrame,
    codes: list[str],
    asof: pd.Timestamp,
    seed: int = 0,
) -> tuple[pd.DataFrame, MIRT | None]:
    """All teachers × competencies, every teacher calibrating (in memory; `features.portrait` streams a
    province): estimate (0–100), std_error, source, is_prior. `teachers` must carry career_stage."""
    cal = calibrate(items, responses, scores, codes, asof, seed)
    measured = measure(cal, responses, scores, asof)
    return with_priors(measured, peer_priors(measured, teachers, codes), teachers["teacher_id"]), cal.model


def measure(
    cal: Calibration, responses: pd.DataFrame, scores: pd.DataFrame, asof: pd.Timestamp
) -> pd.DataFrame:
    """The measured competencies of the teachers in `responses` and `scores` (item estimates fused with
    scores under the province's calibration)."""
    est = item_estimates(cal, responses)
    return fuse(est.table, scores, asof, est.taken_at, cal.link)
