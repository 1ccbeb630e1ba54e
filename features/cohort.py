"""Cohort portrait (群体画像): teacher portraits aggregated over any grouping a trainer looks at.

Per group and competency: mean, quantiles, share below a threshold, rural vs urban; per group: common gaps,
hours progress, completion and no-show rates. Groups under ``min_size`` teachers are shown only as suppressed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from features.history import positions

QUANTILES: Final = (0.10, 0.25, 0.50, 0.75, 0.90)
QUANTILE_COLUMNS: Final = ("p10", "p25", "p50", "p75", "p90")
SCHOOL_TYPES: Final = ("rural", "town", "urban")
TOP_GAPS: Final = 5
MIN_SIZE: Final = 5
THRESHOLD: Final = 60.0
BLANK_KEY: Final = "（空）"


@dataclass(frozen=True)
class CohortPortrait:
    """A cohort portrait over the grouping ``by``; every frame starts with the ``by`` key columns and
    ``group``, a readable label (key values joined by " × ").

    - ``groups``: one row per group, suppressed ones included: ``n_teachers`` (NA when suppressed),
      ``suppressed``, ``size_bucket`` (``"<5"``, only for suppressed groups), ``n_assessed`` (teachers
      with at least one estimate counted), ``mean_hours_done_cycle``, ``share_owing_hours`` (hours_owed > 0),
      ``total_hours_owed``, ``share_owing_it_hours``, ``share_missing_mandatory``, ``completion_rate`` and
      ``no_show_rate`` (pooled over the group's finished records). A figure whose input column is absent from
      the teacher rows is NaN.
    - ``competencies``: one row per shown group × competency: ``n``, ``mean``, ``p10``…``p90``,
      ``share_below`` (estimate < ``threshold``), ``n_rural``/``n_town``/``n_urban`` with ``mean_rural``/
      ``mean_town``/``mean_urban`` and ``urban_minus_rural``; a figure resting on fewer than ``min_size``
      teachers is NaN, and so is a school-type mean that would let one recover such a figure by
      subtraction. ``competency_name`` when a taxonomy was given.
    - ``common_gaps``: per shown group the ``TOP_GAPS`` codes most often among teachers' ``top_gaps``:
      ``rank``, ``competency``, ``n_teachers`` holding it, ``share`` of the group.
    """

    by: tuple[str, ...]
    threshold: float
    min_size: int
    groups: pd.DataFrame
    competencies: pd.DataFrame
    common_gaps: pd.DataFrame

    @property
    def suppressed(self) -> pd.DataFrame:
        """The groups too small to show: their keys, label and size bucket only."""
        small = self.groups[self.groups["suppressed"]]
        return small[[*self.by, "group", "size_bucket"]].reset_index(drop=True)


def cohort_portrait(
    teacher_rows: pd.DataFrame,
    competencies_long: pd.DataFrame,
    by: str | Sequence[str],
    threshold: float = THRESHOLD,
    min_size: int = MIN_SIZE,
    taxonomy: pd.DataFrame | None = None,
    include_priors: bool = False,
) -> CohortPortrait:
    """Aggregate teacher portraits over ``by`` (any teacher-row column(s): county, school_id, stage, subject,
    a class id…). Teachers whose key is blank form their own group.

    ``teacher_rows`` is the teachers portrait (teacher_id, the key columns, school_type, hours_done_cycle,
    hours_owed, it_hours_owed, n_completed, n_no_show, n_finished, missing_mandatory, top_gaps — each optional
    except the keys); ``competencies_long`` has teacher_id, competency, estimate and optionally is_prior.
    Prior estimates (peers' means standing in for unassessed teachers) are left out unless ``include_priors``,
    so a county's figures describe its assessed teachers and not its peers. Quantiles interpolate linearly
    (numpy's default). Groups with fewer than ``min_size`` teachers get no figures at all.
    """
    keys = [by] if isinstance(by, str) else list(by)
    absent = [k for k in keys if k not in teacher_rows]
    if absent:
        raise ValueError(f"cannot group by {absent}: teacher rows have columns {list(teacher_rows.columns)}")
    rows = teacher_rows.reset_index(drop=True)
    gid = rows.groupby(keys, dropna=False, sort=True).ngroup().to_numpy()
    sizes = np.bincount(gid, minlength=int(gid.max()) + 1 if len(gid) else 0)
    shown = sizes >= min_size
    key_frame = rows[keys].assign(gid=gid).drop_duplicates("gid").set_index("gid").sort_index()
    key_frame["group"] = _group_labels(key_frame[keys])

    scores = _scores(rows, gid, shown, competencies_long, include_priors)
    groups = _group_figures(rows, gid, sizes, shown, scores, min_size)
    competencies = _competency_figures(scores, threshold, min_size)
    if taxonomy is not None:
        names = taxonomy.drop_duplicates("code").set_index("code")["name"]
        competencies["competency_name"] = competencies["competency"].map(names)
    gaps = _common_gaps(rows, gid, sizes, shown)
    return CohortPortrait(
        by=tuple(keys),
        threshold=float(threshold),
        min_size=int(min_size),
        groups=_with_keys(groups, key_frame),
        competencies=_with_keys(competencies, key_frame),
        common_gaps=_with_keys(gaps, key_frame),
    )


def behind_on_hours(teacher_rows: pd.DataFrame, where: Mapping[str, object] | None = None) -> list[str]:
    """Ids of teachers behind on hours (hours_owed > 0 or it_hours_owed > 0), most owed first.

    Individual-level output: only for callers authorised to see the named teachers (a trainer of that county
    or school, an administrator); the caller checks the role before calling — cohort portraits never list
    individuals. ``where`` filters rows: ``{"county": "修水县"}``, or a list of accepted values per column.
    """
    rows = teacher_rows
    for column, wanted in (where or {}).items():
        accepted = list(wanted) if isinstance(wanted, list | tuple | set | frozenset) else [wanted]
        rows = rows[rows[column].isin(accepted)]
    owed = _column(rows, "hours_owed").fillna(0.0)
    it_owed = _column(rows, "it_hours_owed").fillna(0.0)
    behind = rows.assign(_owed=owed, _it=it_owed)[(owed > 0) | (it_owed > 0)]
    ordered = behind.sort_values(["_owed", "_it", "teacher_id"], ascending=[False, False, True])
    return ordered["teacher_id"].astype(str).tolist()


def cohort_summary_frame(portrait: CohortPortrait) -> pd.DataFrame:
    """The long table ``tdr cohort --by … --out FILE`` writes: one ``group`` row per group, then one
    ``competency`` row per shown group × competency.

    Columns: the key columns, ``group`` (keys joined by " × ", blank keys as （空）), ``row_type``,
    ``competency`` (blank on group rows), ``competency_name`` when known, ``n`` (teachers in the group on a
    group row, blank when suppressed; estimates counted on a competency row), ``mean``, ``p10``…``p90``,
    ``share_below``, then ``suppressed`` and ``size_bucket``, the other group figures of
    ``CohortPortrait.groups`` (group rows), ``common_gaps`` as text ("B2(12)；A1(9)") and the rural / town /
    urban columns (competency rows).
    """
    keys = list(portrait.by)
    gap_text = _gap_text(portrait.common_gaps)
    groups = portrait.groups.drop(columns="n_teachers").assign(
        row_type="group", n=portrait.groups["n_teachers"], common_gaps=portrait.groups["group"].map(gap_text)
    )
    comps = portrait.competencies.assign(row_type="competency", suppressed=False)
    table = pd.concat([groups, comps], ignore_index=True)
    counts = ["n", "n_assessed", *(f"n_{school_type}" for school_type in SCHOOL_TYPES)]
    table[counts] = table[counts].astype("Int64")
    table["suppressed"] = table["suppressed"].astype(bool)
    order = pd.Series(np.arange(len(groups)), index=groups["group"].to_numpy())
    table["_order"] = table["group"].map(order[~order.index.duplicated()])
    table["_competency_row"] = table["row_type"] == "competency"
    table = table.sort_values(["_order", "_competency_row", "competency"], kind="stable", na_position="first")
    lead = [*keys, "group", "row_type", "competency"]
    if "competency_name" in table:
        lead.append("competency_name")
    figures = ["n", "mean", *QUANTILE_COLUMNS, "share_below"]
    rest = [c for c in table.columns if c not in {*lead, *figures, "_order", "_competency_row"}]
    return table[[*lead, *figures, *rest]].reset_index(drop=True)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A numeric column, or NaN when the teacher rows do not carry it."""
    if name in frame:
        return pd.to_numeric(frame[name], errors="coerce").astype(float)
    return pd.Series(np.nan, index=frame.index)


@dataclass(frozen=True)
class _Scores:
    """The estimates that count, as parallel integer-coded arrays (one entry per teacher × competency)."""

    teacher: np.ndarray  # position in the teacher rows
    gid: np.ndarray
    competency: np.ndarray  # position in ``codes``
    estimate: np.ndarray
    school_type: np.ndarray  # position in SCHOOL_TYPES, -1 when unknown
    codes: np.ndarray  # sorted competency codes


def _scores(
    rows: pd.DataFrame,
    gid: np.ndarray,
    shown: np.ndarray,
    competencies_long: pd.DataFrame,
    include_priors: bool,
) -> _Scores:
    """Estimates of teachers in shown groups; priors only when asked for. Masks are applied to arrays so the
    long table's string columns are never copied."""
    teacher = positions(pd.Index(rows["teacher_id"]), competencies_long["teacher_id"])
    competency, codes = pd.factorize(competencies_long["competency"].astype(str), sort=True)
    estimate = pd.to_numeric(competencies_long["estimate"], errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )
    keep = (teacher >= 0) & ~np.isnan(estimate)
    if not include_priors and "is_prior" in competencies_long:
        keep &= ~competencies_long["is_prior"].fillna(False).to_numpy(dtype=bool)
    keep[keep] = shown[gid[teacher[keep]]]
    school = (
        rows["school_type"] if "school_type" in rows else pd.Series(pd.NA, index=rows.index, dtype=object)
    )
    teacher = teacher[keep]
    return _Scores(
        teacher=teacher,
        gid=gid[teacher],
        competency=competency[keep],
        estimate=estimate[keep],
        school_type=positions(SCHOOL_TYPES, school)[teacher],
        codes=np.asarray(codes, dtype=object),
    )


def _group_figures(
    rows: pd.DataFrame,
    gid: np.ndarray,
    sizes: np.ndarray,
    shown: np.ndarray,
    scores: _Scores,
    min_size: int,
) -> pd.DataFrame:
    owed = _column(rows, "hours_owed")
    it_owed = _column(rows, "it_hours_owed")
    if "missing_mandatory" in rows:
        missing = (rows["missing_mandatory"].str.len().fillna(0) > 0).astype(float)
    else:
        missing = pd.Series(np.nan, index=rows.index)
    per_teacher = pd.DataFrame(
        {
            "gid": gid,
            "mean_hours_done_cycle": _column(rows, "hours_done_cycle"),
            "share_owing_hours": (owed > 0).astype(float).where(owed.notna()),
            "total_hours_owed": owed,
            "share_owing_it_hours": (it_owed > 0).astype(float).where(it_owed.notna()),
            "share_missing_mandatory": missing,
            "n_completed": _column(rows, "n_completed"),
            "n_no_show": _column(rows, "n_no_show"),
            "n_finished": _column(rows, "n_finished"),
        }
    )
    by_group = per_teacher.groupby("gid")
    figures = by_group[["mean_hours_done_cycle", "share_owing_hours", "share_owing_it_hours"]].mean()
    figures["share_missing_mandatory"] = by_group["share_missing_mandatory"].mean()
    sums = by_group[["total_hours_owed", "n_completed", "n_no_show", "n_finished"]].sum(min_count=1)
    finished = sums["n_finished"].where(sums["n_finished"] > 0)
    figures["total_hours_owed"] = sums["total_hours_owed"]
    figures["completion_rate"] = sums["n_completed"] / finished
    figures["no_show_rate"] = sums["n_no_show"] / finished
    assessed = np.zeros(len(rows), dtype=bool)
    assessed[scores.teacher] = True
    figures["n_assessed"] = np.bincount(gid[assessed], minlength=len(sizes))
    figures = figures.reindex(np.arange(len(sizes)))
    figures["n_assessed"] = figures["n_assessed"].fillna(0)
    figures.loc[~shown, :] = np.nan
    figures["n_assessed"] = figures["n_assessed"].astype("Int64")
    figures.insert(0, "n_teachers", pd.Series(sizes, index=figures.index).where(shown).astype("Int64"))
    figures.insert(1, "suppressed", ~shown)
    bucket = pd.Series(f"<{min_size}", index=figures.index, dtype="string")
    figures.insert(2, "size_bucket", bucket.where(~shown))
    return figures.rename_axis("gid").reset_index()


def _competency_figures(scores: _Scores, threshold: float, min_size: int) -> pd.DataFrame:
    """Figures per group × competency from one sort of the estimates by cell, then by value."""
    codes = scores.codes
    width = max(len(codes), 1)
    # Sort by (cell, estimate) with a single integer sort: cell-major, then the estimate's rank.
    rank = np.empty(len(scores.estimate), dtype=np.int64)
    rank[np.argsort(scores.estimate)] = np.arange(len(rank))
    cell = scores.gid * width + scores.competency
    order = np.argsort(cell * max(len(rank), 1) + rank)
    cell, estimate, school = cell[order], scores.estimate[order], scores.school_type[order]
    starts = _run_starts(cell)
    n = np.diff(np.r_[starts, len(cell)])
    segment = np.repeat(np.arange(len(starts)), n)
    figures = pd.DataFrame(
        {
            "gid": cell[starts] // width,
            "competency": codes[cell[starts] % width] if len(codes) else np.zeros(0, dtype=object),
            "n": n.astype(np.int64),
            "mean": np.bincount(segment, estimate, minlength=len(starts)) / n,
        }
    )
    for q, column in zip(QUANTILES, QUANTILE_COLUMNS, strict=True):
        figures[column] = _sorted_quantile(estimate, starts, n, q)
    figures["share_below"] = np.bincount(segment, estimate < threshold, minlength=len(starts)) / n
    figures.loc[n < min_size, ["mean", *QUANTILE_COLUMNS, "share_below"]] = np.nan

    counts, sums = _school_type_sums(segment, school, estimate, len(starts))
    visible = _disclosable(counts, n, min_size)
    for j, school_type in enumerate(SCHOOL_TYPES):
        figures[f"n_{school_type}"] = counts[:, j]
        figures[f"mean_{school_type}"] = np.where(
            visible[:, j], sums[:, j] / np.maximum(counts[:, j], 1), np.nan
        )
    figures["urban_minus_rural"] = figures["mean_urban"] - figures["mean_rural"]
    return figures


def _school_type_sums(
    segment: np.ndarray, school: np.ndarray, estimate: np.ndarray, n_cells: int
) -> tuple[np.ndarray, np.ndarray]:
    """(cells, school types) counts and sums of estimates; unknown school types are left out."""
    typed = school >= 0
    by_type = segment[typed] * len(SCHOOL_TYPES) + school[typed]
    size = n_cells * len(SCHOOL_TYPES)
    counts = np.bincount(by_type, minlength=size).reshape(-1, len(SCHOOL_TYPES)).astype(np.int64)
    sums = np.bincount(by_type, estimate[typed], minlength=size).reshape(-1, len(SCHOOL_TYPES))
    return counts, sums


def _disclosable(counts: np.ndarray, n: np.ndarray, min_size: int) -> np.ndarray:
    """Which school-type means of a cell may be shown.

    A part under ``min_size`` teachers is hidden; and because the cell's overall mean is shown, the hidden
    parts together (teachers of unknown school type included) must also reach ``min_size``, or one could
    subtract the shown parts from the whole and recover a few teachers' scores — so the smallest shown part
    is hidden too (secondary suppression).
    """
    visible = counts >= min_size
    hidden = np.where(visible, 0, counts).sum(axis=1) + (n - counts.sum(axis=1))
    exposed = (hidden > 0) & (hidden < min_size) & visible.any(axis=1)
    smallest = np.where(visible, counts, np.iinfo(np.int64).max).argmin(axis=1)
    visible[np.flatnonzero(exposed), smallest[exposed]] = False
    return visible


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Positions where a new key begins in a sorted array."""
    if not len(sorted_keys):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


def _sorted_quantile(values: np.ndarray, starts: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` of each sorted run, interpolated linearly between order statistics (numpy's default)."""
    position = q * (n - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, n - 1)
    fraction = position - low
    return values[starts + low] + fraction * (values[starts + high] - values[starts + low])


def _common_gaps(rows: pd.DataFrame, gid: np.ndarray, sizes: np.ndarray, shown: np.ndarray) -> pd.DataFrame:
    if "top_gaps" not in rows:
        return pd.DataFrame({"gid": [], "rank": [], "competency": [], "n_teachers": [], "share": []})
    codes = rows["top_gaps"].explode().dropna().astype(str)
    position = codes.index.to_numpy(dtype=np.int64)
    held = pd.DataFrame({"gid": gid[position], "teacher": position, "competency": codes.to_numpy()})
    held = held[shown[held["gid"].to_numpy()]].drop_duplicates(["teacher", "competency"])
    counts = held.groupby(["gid", "competency"]).size().rename("n_teachers").reset_index()
    counts = counts.sort_values(["gid", "n_teachers", "competency"], ascending=[True, False, True])
    counts["rank"] = counts.groupby("gid").cumcount() + 1
    top = counts[counts["rank"] <= TOP_GAPS].reset_index(drop=True)
    top["share"] = top["n_teachers"] / sizes[top["gid"].to_numpy()]
    return top[["gid", "rank", "competency", "n_teachers", "share"]]


def _with_keys(frame: pd.DataFrame, key_frame: pd.DataFrame) -> pd.DataFrame:
    keyed = key_frame.reindex(frame["gid"].to_numpy()).reset_index(drop=True)
    return pd.concat([keyed, frame.drop(columns="gid").reset_index(drop=True)], axis=1)


def _group_labels(keys: pd.DataFrame) -> pd.Series:
    """Readable group names: the key values joined by " × ", a blank key shown as （空）."""
    parts = [keys[k].astype("string").fillna(BLANK_KEY) for k in keys.columns]
    label = parts[0]
    for part in parts[1:]:
        label = label + " × " + part
    return label.rename("group")


def _gap_text(common_gaps: pd.DataFrame) -> pd.Series:
    """Each group's common gaps as one text cell, indexed by group label."""
    gaps = common_gaps.sort_values(["group", "rank"])
    text = gaps["competency"].astype(str) + "(" + gaps["n_teachers"].astype(str) + ")"
    return text.groupby(gaps["group"], sort=False).agg("；".join)
