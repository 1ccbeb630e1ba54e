"""Training-history portrait (培训经历画像): what each teacher has studied, how, and what is still owed.

Turns the normalised training records into one row per teacher (hours by competency domain and format over
recent windows, completion behaviour, format taste, mandatory topics) and derives hours owed under a policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from data.policy import Policy
from data.schema import FORMAT

CAREER_STAGES: Final = ("novice", "developing", "backbone", "expert")
CAREER_STAGE_ZH: Final = {"novice": "新入职", "developing": "成长期", "backbone": "骨干", "expert": "专家"}

FORMATS: Final = FORMAT.values
STATUSES: Final = ("enrolled", "completed", "dropped", "no_show")
WINDOWS: Final = (1, 3, 5)
UNKNOWN: Final = "unknown"
IT_DOMAIN: Final = "信息技术应用"
# English column stems for the built-in domains; a deployment's own domains keep their own names.
DOMAIN_SLUGS: Final = {
    "师德与理念": "ethics",
    "专业知识": "knowledge",
    "教学设计与实施": "instruction",
    "学生评价": "assessment",
    "班级管理与育人": "classroom",
    "信息技术应用": "it",
    "教研与专业发展": "research",
    "管理与领导": "leadership",
}
# Prior strength, in 学时, pulling a teacher's format shares toward the population: a teacher with one
# 24-hour course is half their own taste and half everybody's.
FORMAT_PRIOR_HOURS: Final = 24.0
REPEAT_WINDOW_YEARS: Final = 3
MANDATORY_PREFIX: Final = "mandatory_last__"

_FORMAT_LEVELS: Final = (*FORMATS, UNKNOWN)
_NOVICE_MAX_YEARS: Final = 3
_EXPERT_MIN_YEARS: Final = 20
_BACKBONE_MIN_YEARS: Final = 10


def domain_slug(domain: str) -> str:
    """Column stem of a competency domain: the English slug of a built-in domain, else the domain itself."""
    return DOMAIN_SLUGS.get(domain, domain)


def hours_column(years: int) -> str:
    """Column of completed hours over the last ``years`` years."""
    return f"hours_{years}y"


def domain_hours_column(domain: str, years: int) -> str:
    """Column of completed hours in ``domain`` (taxonomy domain name or ``UNKNOWN``) over ``years`` years."""
    return f"hours_{years}y_dom_{domain_slug(domain)}"


def format_hours_column(fmt: str, years: int) -> str:
    """Column of completed hours in format ``fmt`` (or ``UNKNOWN``) over ``years`` years."""
    return f"hours_{years}y_fmt_{fmt}"


def format_share_column(fmt: str) -> str:
    """Column of the teacher's smoothed share of completed hours in format ``fmt``."""
    return f"format_share_{fmt}"


def mandatory_column(topic: str) -> str:
    """Column holding the last completion date of mandatory topic ``topic`` (e.g. 师德师风)."""
    return f"{MANDATORY_PREFIX}{topic}"


def positions(levels: pd.Index | Sequence[str], values: pd.Series) -> np.ndarray:
    """Position of each value in ``levels`` (unique), -1 for blanks and values outside them: the integer
    codes the batch paths aggregate on. Factorising first hashes each distinct string once, not once per row.
    """
    codes, uniques = pd.factorize(values)
    found = np.append(pd.Index(levels).get_indexer(pd.Index(uniques).astype(object)), -1)
    return found[codes].astype(np.int64)  # code -1 (blank) picks the appended -1


def career_stage(teachers: pd.DataFrame) -> pd.Series:
    """Career stage (职业发展阶段) of each teacher, index-aligned with ``teachers``.

    Rules, first match wins:
    - novice (新入职): years_teaching ≤ 3 — the induction years come first whatever the title says;
    - expert (专家): title full_senior; or title senior with years_teaching ≥ 20; or title senior and a
      researcher or trainer role (教研员/培训者);
    - backbone (骨干): title first or senior; or years_teaching ≥ 10; or a head-of-school role (principal,
      party_secretary);
    - developing (成长期): everybody else, including teachers whose years and title are unknown.
    """
    n = len(teachers)
    years = pd.to_numeric(_optional(teachers, "years_teaching"), errors="coerce")
    title = _optional(teachers, "title").astype("string")
    roles = _explode(_optional(teachers, "roles"))
    researcher_or_trainer = _rows_having(roles, ("researcher", "trainer"), n)
    head_of_school = _rows_having(roles, ("principal", "party_secretary"), n)

    def flag(cond: pd.Series) -> np.ndarray:
        return cond.fillna(False).to_numpy(dtype=bool)

    senior = flag(title == "senior")
    novice = flag(years <= _NOVICE_MAX_YEARS)
    expert = (
        flag(title == "full_senior")
        | (senior & flag(years >= _EXPERT_MIN_YEARS))
        | (senior & researcher_or_trainer)
    )
    backbone = flag(title.isin(["first", "senior"])) | flag(years >= _BACKBONE_MIN_YEARS) | head_of_school
    stage = np.select([novice, expert, backbone], ["novice", "expert", "backbone"], default="developing")
    return pd.Series(stage, index=teachers.index, name="career_stage")


def history_features(
    teachers: pd.DataFrame,
    records: pd.DataFrame,
    courses: pd.DataFrame,
    taxonomy: pd.DataFrame,
    asof: pd.Timestamp,
    windows: Sequence[int] = WINDOWS,
) -> pd.DataFrame:
    """Training-history aggregates, one row per teacher of ``teachers`` (in that order), as of ``asof``.

    A record counts on its end date (its start date when the end is blank); records dated after ``asof`` are
    ignored. A window of ``w`` years holds dates in ``[asof − w years, asof]``, both ends included. Hours are
    the record's hours (the course's when blank) and count only for completed records. A course's hours are
    split equally among its competencies and credited to each competency's taxonomy domain; records without a
    course, untagged courses and codes outside the taxonomy go to the ``unknown`` domain — pass courses with
    inferred competencies filled in to have them counted. The format is the record's, else the course's.

    Columns (teachers without records get zeros, empty lists, or NaN where a figure has no meaning):
    - per window: ``hours_{w}y``, ``hours_{w}y_dom_{domain}`` (see ``domain_hours_column``),
      ``hours_{w}y_fmt_{format}``;
    - ``n_records``, ``n_completed``, ``n_dropped``, ``n_no_show``, ``n_finished`` (the three outcomes);
      ``completion_rate``, ``dropout_rate``, ``no_show_rate`` over ``n_finished`` (enrolled records are still
      running, so they are left out); ``mean_score``, ``mean_satisfaction`` over records that have one;
    - ``days_since_last_training``: days from the last completed record to ``asof``;
    - ``repeated_topics``: topics completed more than once in the last 3 years, a topic being the course's
      mandatory topic, else its set of competencies, else the course, else the project (重复培训);
    - ``format_share_{format}``: share of completed hours by format over the longest window, smoothed toward
      the population's shares with ``FORMAT_PRIOR_HOURS`` of prior weight (the teacher's format taste);
    - ``completed_course_ids``: sorted list of completed course ids (all time up to ``asof``);
    - ``mandatory_last__{topic}``: last completion date of each mandatory topic found in ``courses``.
    """
    asof = pd.Timestamp(asof)
    windows = sorted(set(windows))
    ids = pd.Index(teachers["teacher_id"], name="teacher_id")
    n = len(ids)
    catalogue = _catalogue(courses, taxonomy)
    rec = _dated_records(records, ids, catalogue, asof)
    done = rec[rec["status"] == STATUSES.index("completed")]

    columns: dict[str, object] = {"teacher_id": ids}
    by_format = np.zeros((n, len(_FORMAT_LEVELS)))  # left holding the longest window, the one taste uses
    for w in windows:
        in_w = done[done["date"] >= _window_start(asof, w)]
        teacher, hours, course = (
            in_w["teacher"].to_numpy(),
            in_w["hours"].to_numpy(),
            in_w["course"].to_numpy(),
        )
        columns[hours_column(w)] = np.bincount(teacher, hours, minlength=n)
        for j, domain in enumerate(catalogue.domains):
            share = catalogue.domain_share[course, j]
            columns[domain_hours_column(domain, w)] = np.bincount(teacher, hours * share, minlength=n)
        by_format = _sum_by_level(teacher, in_w["format"].to_numpy(), hours, n, len(_FORMAT_LEVELS))
        for j, fmt in enumerate(_FORMAT_LEVELS):
            columns[format_hours_column(fmt, w)] = by_format[:, j]
    columns.update(_outcomes(rec, n))
    columns["days_since_last_training"] = _days_since(_last_date(done, n), asof)
    columns["repeated_topics"] = _repeated_topics(done, n, asof)
    columns.update(format_shares(by_format[:, : len(FORMATS)]))
    columns["completed_course_ids"] = _completed_course_ids(done, catalogue, n)
    for j, topic in enumerate(catalogue.mandatory_topics):
        columns[mandatory_column(topic)] = _last_date(done[done["mandatory"] == j], n)
    return pd.DataFrame(columns)


def hours_owed(
    history: pd.DataFrame, policy: Policy, asof: pd.Timestamp, stages: pd.Series | None = None
) -> pd.DataFrame:
    """Hours and mandatory topics a teacher still owes under ``policy`` as of ``asof``.

    ``history`` is ``history_features`` output computed with windows that include ``policy.cycle_years`` and
    ``policy.it_years``. Returns teacher_id and:
    - ``hours_done_cycle`` (completed hours in the last ``cycle_years``) and
      ``hours_owed = max(0, cycle_hours − hours_done_cycle)`` (e.g. 360 学时 per 5 years);
    - ``it_hours_done`` (hours credited to the 信息技术应用 domain in the last ``it_years``) and ``it_hours_owed``
      (e.g. the 2.0 project's 50 学时 in 3 years); NaN when the taxonomy has no such domain — unknown, not 0;
    - ``missing_mandatory``: the policy's mandatory topics not completed within their recency window (a
      completion exactly ``recency_months`` ago still counts; no recency means once ever is enough), in policy
      order. ``stages`` (the teachers' stages, in history row order) limits a topic to the stages it names,
      e.g. 少先队工作 to primary; without it every topic applies to everyone. A completion counts whatever
      its format: a topic's ``formats`` steer which courses a menu offers, not what a teacher has done.
    """
    asof = pd.Timestamp(asof)
    cycle_col = hours_column(policy.cycle_years)
    it_col = domain_hours_column(IT_DOMAIN, policy.it_years)
    it_window = hours_column(policy.it_years)
    for col, field in ((cycle_col, "cycle_years"), (it_window, "it_years")):
        if col not in history:
            raise ValueError(
                f"history has no column {col!r}: compute history_features with windows including "
                f"policy.{field}={getattr(policy, field)}"
            )
    done = history[cycle_col].astype(float)
    it_done = history[it_col].astype(float) if it_col in history else pd.Series(np.nan, index=history.index)
    return pd.DataFrame(
        {
            "teacher_id": history["teacher_id"],
            "hours_done_cycle": done,
            "hours_owed": (policy.cycle_hours - done).clip(lower=0.0),
            "it_hours_done": it_done,
            "it_hours_owed": (policy.it_hours - it_done).clip(lower=0.0),
            "missing_mandatory": _missing_mandatory(history, policy, asof, stages),
        }
    )


def _explode(lists: pd.Series) -> pd.Series:
    """One row per list element, indexed by the position of its source row (blank lists give no row)."""
    return lists.reset_index(drop=True).explode().dropna().astype("string")


def _optional(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column of ``frame``, or an all-missing one when the table does not carry it."""
    return frame[column] if column in frame else pd.Series(pd.NA, index=frame.index, dtype=object)


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(_optional(frame, column), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _unique_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and their counts (a sort beats numpy's hash-based unique on int64 here)."""
    ordered = np.sort(keys)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(ordered) else np.zeros(0, int)
    return ordered[starts], np.diff(np.r_[starts, len(ordered)])


def _rows_having(exploded: pd.Series, wanted: Sequence[str], n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[exploded.index[exploded.isin(wanted)].to_numpy(dtype=np.int64)] = True
    return mask


def _list_cells(rows: np.ndarray, values: np.ndarray, n: int) -> list[list[str]]:
    """Group ``values`` into ``n`` list cells by row position (order kept); cells are split, not looped."""
    order = np.argsort(rows, kind="stable")
    bounds = np.cumsum(np.bincount(rows, minlength=n))[:-1]
    return list(map(np.ndarray.tolist, np.split(np.asarray(values, dtype=object)[order], bounds)))


@dataclass(frozen=True)
class _Catalogue:
    """Course attributes as arrays by course position; one extra last position stands for "no course"."""

    ids: pd.Index
    hours: np.ndarray  # (C + 1,) NaN when unknown
    format: np.ndarray  # (C + 1,) position in FORMATS, -1 when unknown
    domains: list[str]  # taxonomy domains, then UNKNOWN
    domain_share: np.ndarray  # (C + 1, D) share of the course's hours per domain, rows sum to 1
    topic: np.ndarray  # (C + 1,) repeated-training topic id, -1 for "no course"
    n_topics: int
    mandatory_topics: list[str]
    mandatory: np.ndarray  # (C + 1,) position in mandatory_topics, -1 when none


def _catalogue(courses: pd.DataFrame, taxonomy: pd.DataFrame) -> _Catalogue:
    n = len(courses)
    ids = pd.Index(_optional(courses, "course_id").astype(str))
    domains = _domains(taxonomy)
    codes = _explode(_optional(courses, "competencies"))
    code_domain = taxonomy.dropna(subset=["domain"]).drop_duplicates("code").set_index("code")["domain"]
    domain = positions(domains, codes.map(code_domain))
    domain[domain < 0] = len(domains) - 1
    position = codes.index.to_numpy(dtype=np.int64)
    per_course = np.bincount(position, minlength=n + 1)
    share = np.zeros((n + 1, len(domains)))
    np.add.at(share, (position, domain), 1.0 / per_course[position])
    share[per_course == 0, -1] = 1.0

    comp_set = codes.astype(str).groupby(level=0).agg(lambda c: ";".join(sorted(set(c))))
    comp_key = ("c:" + comp_set).reindex(range(n)).set_axis(courses.index).astype("string")
    mandatory = _optional(courses, "mandatory_topic").astype("string")
    key = ("m:" + mandatory).fillna(comp_key).fillna("id:" + pd.Series(ids, index=courses.index))
    topic, uniques = pd.factorize(key)
    mandatory_topics = sorted(mandatory.dropna().unique())
    return _Catalogue(
        ids=ids,
        hours=np.append(_numbers(courses, "hours"), np.nan),
        format=np.append(positions(FORMATS, _optional(courses, "format")), -1),
        domains=domains,
        domain_share=share,
        topic=np.append(topic, -1),
        n_topics=len(uniques),
        mandatory_topics=mandatory_topics,
        mandatory=np.append(positions(mandatory_topics, mandatory), -1),
    )


def _domains(taxonomy: pd.DataFrame) -> list[str]:
    """Taxonomy domains in order of first appearance, then ``unknown``."""
    found = taxonomy["domain"].dropna().astype(str).drop_duplicates().tolist()
    return [*[d for d in found if d != UNKNOWN], UNKNOWN]


def _dated_records(
    records: pd.DataFrame, ids: pd.Index, catalogue: _Catalogue, asof: pd.Timestamp
) -> pd.DataFrame:
    """Records of known teachers dated on or before ``asof``, as integer codes joined to the catalogue."""
    teacher = positions(ids, _optional(records, "teacher_id"))
    course = positions(catalogue.ids, _optional(records, "course_id"))
    course[course < 0] = len(catalogue.ids)
    end = pd.to_datetime(_optional(records, "end_date"))
    date = end.fillna(pd.to_datetime(_optional(records, "start_date"))).to_numpy(dtype="datetime64[ns]")
    hours = _numbers(records, "hours")
    hours = np.nan_to_num(np.where(np.isnan(hours), catalogue.hours[course], hours))
    fmt = positions(FORMATS, _optional(records, "format"))
    fmt = np.where(fmt < 0, catalogue.format[course], fmt)
    fmt[fmt < 0] = len(FORMATS)
    project, _ = pd.factorize(_optional(records, "project_id").astype("string"))
    topic = np.where(course < len(catalogue.ids), catalogue.topic[course], catalogue.n_topics + project)
    topic[(course == len(catalogue.ids)) & (project < 0)] = -1
    rec = pd.DataFrame(
        {
            "teacher": teacher,
            "course": course,
            "date": date,
            "hours": hours,
            "format": fmt,
            "status": positions(STATUSES, _optional(records, "status")),
            "score": _numbers(records, "score"),
            "satisfaction": _numbers(records, "satisfaction"),
            "topic": topic,
            "mandatory": catalogue.mandatory[course],
        }
    )
    return rec[(teacher >= 0) & (date <= asof.to_datetime64())].reset_index(drop=True)


def _window_start(asof: pd.Timestamp, years: int) -> np.datetime64:
    return (asof - pd.DateOffset(years=years)).to_datetime64()


def _sum_by_level(teacher: np.ndarray, level: np.ndarray, weights: np.ndarray, n: int, k: int) -> np.ndarray:
    """(n, k) sums of ``weights`` by teacher position and level position."""
    return np.bincount(teacher * k + level, weights, minlength=n * k).reshape(n, k)


def _outcomes(rec: pd.DataFrame, n: int) -> dict[str, np.ndarray]:
    teacher = rec["teacher"].to_numpy()
    status = rec["status"].to_numpy()
    known = status >= 0
    counts = _sum_by_level(teacher[known], status[known], np.ones(int(known.sum())), n, len(STATUSES))
    completed, dropped, no_show = (counts[:, STATUSES.index(s)] for s in ("completed", "dropped", "no_show"))
    finished = completed + dropped + no_show
    denominator = np.where(finished > 0, finished, np.nan)
    out = {
        "n_records": np.bincount(teacher, minlength=n),
        "n_completed": completed.astype(np.int64),
        "n_dropped": dropped.astype(np.int64),
        "n_no_show": no_show.astype(np.int64),
        "n_finished": finished.astype(np.int64),
        "completion_rate": completed / denominator,
        "dropout_rate": dropped / denominator,
        "no_show_rate": no_show / denominator,
    }
    for column in ("score", "satisfaction"):
        values = rec[column].to_numpy()
        given = ~np.isnan(values)
        total = np.bincount(teacher[given], values[given], minlength=n)
        count = np.bincount(teacher[given], minlength=n)
        out[f"mean_{column}"] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def _last_date(rec: pd.DataFrame, n: int) -> np.ndarray:
    """Latest record date per teacher position (NaT for none)."""
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)  # the integer behind NaT
    np.maximum.at(
        last, rec["teacher"].to_numpy(), rec["date"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    )
    return last.view("datetime64[ns]")


def _days_since(last: np.ndarray, asof: pd.Timestamp) -> np.ndarray:
    elapsed = pd.Series(asof - pd.DatetimeIndex(last))
    return elapsed.dt.days.to_numpy(dtype=float, na_value=np.nan)


def _repeated_topics(done: pd.DataFrame, n: int, asof: pd.Timestamp) -> np.ndarray:
    recent = done[(done["date"] >= _window_start(asof, REPEAT_WINDOW_YEARS)) & (done["topic"] >= 0)]
    width = int(recent["topic"].max()) + 1 if len(recent) else 1
    keys, counts = _unique_counts(recent["teacher"].to_numpy() * width + recent["topic"].to_numpy())
    return np.bincount(keys[counts >= 2] // width, minlength=n).astype(np.int64)


def format_hours(history: pd.DataFrame, years: int) -> np.ndarray:
    """The (n, len(FORMATS)) completed hours by format over `years` of `history_features` output (its longest
    window is the one format taste is taken over)."""
    return history[[format_hours_column(f, years) for f in FORMATS]].to_numpy(dtype=np.float64)


def format_shares(hours: np.ndarray, population: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Smoothed format shares from an (n, len(FORMATS)) matrix of completed hours, pulled toward the
    population's shares (`population`: its hours by format; the rows of `hours` when not given)."""
    population = hours.sum(axis=0) if population is None else population
    if population.sum() > 0:
        prior = population / population.sum()
    else:
        prior = np.full(len(FORMATS), 1.0 / len(FORMATS))
    shares = (hours + FORMAT_PRIOR_HOURS * prior) / (hours.sum(axis=1, keepdims=True) + FORMAT_PRIOR_HOURS)
    return {format_share_column(fmt): shares[:, j] for j, fmt in enumerate(FORMATS)}


def _completed_course_ids(done: pd.DataFrame, catalogue: _Catalogue, n: int) -> list[list[str]]:
    n_courses = max(len(catalogue.ids), 1)
    order = np.argsort(catalogue.ids.to_numpy(dtype=str), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    with_course = done[done["course"] < len(catalogue.ids)]
    keys, _ = _unique_counts(
        with_course["teacher"].to_numpy() * n_courses + rank[with_course["course"].to_numpy()]
    )
    sorted_ids = catalogue.ids.to_numpy(dtype=object)[order]
    return _list_cells(keys // n_courses, sorted_ids[keys % n_courses], n)


def _missing_mandatory(
    history: pd.DataFrame, policy: Policy, asof: pd.Timestamp, stages: pd.Series | None
) -> pd.Series:
    n = len(history)
    stage = None if stages is None else pd.Series(np.asarray(stages, dtype=object))
    if stage is not None and len(stage) != n:
        raise ValueError(f"stages has {len(stage)} rows, history has {n}: pass the teachers' stages in order")
    missing = np.zeros((n, len(policy.mandatory_topics)), dtype=bool)
    for j, topic in enumerate(policy.mandatory_topics):
        col = mandatory_column(topic.topic)
        last = pd.to_datetime(history[col]) if col in history else pd.Series(pd.NaT, index=history.index)
        since = (
            pd.Timestamp.min
            if topic.recency_months is None
            else asof - pd.DateOffset(months=topic.recency_months)
        )
        missing[:, j] = ~(last >= since).fillna(False).to_numpy(dtype=bool)
        if stage is not None and topic.stages:
            missing[:, j] &= stage.isin(topic.stages).to_numpy(dtype=bool)
    rows, cols = np.nonzero(missing)
    names = np.asarray([t.topic for t in policy.mandatory_topics], dtype=object)
    cells = _list_cells(rows, names[cols], n)
    return pd.Series(cells, index=history.index, dtype=object, name="missing_mandatory")
