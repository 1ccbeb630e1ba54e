"""Trainee selection (精准选人) and classes (50人编班) for a training project: who may join, who should, in which
class and at what cost — every exclusion and every choice with a reason a clerk can read.

Eligibility applies the project's target group and the policy's bars; ranking measures how much the
project's content (embedded and tagged like a course) meets each teacher's gaps, plus the policy's explicit
rural weight; classes are k-means whose assignment step keeps every class at its size.
"""

from __future__ import annotations

import io
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from openpyxl import Workbook
from scipy.optimize import linear_sum_assignment

from data.policy import Policy
from data.reference import load_jiangxi_projects
from data.schema import FORMAT, ROLE, SCHOOL_TYPE, STAGE, TITLE, EnumSpec
from data.workspace import Workspace, atomic_write
from features.cohort import CohortPortrait, cohort_portrait
from features.history import positions
from models.encoder import Encoder
from models.lexical import BM25
from models.tagger import CompetencyTagger, top_tags
from recommender.artifacts import Artifacts, load_current
from recommender.config import Settings, settings
from recommender.train import competency_texts, course_texts
from recommender.workbook import append_sheet

# How far back a completed run of the same project counts as "trained on this content" (杜绝无效的重复培训).
REPEAT_YEARS: Final = 3
# The tagger's probabilities are calibrated (about one (course, competency) pair in K is a tag, ~0.02 with the
# built-in taxonomy): a top tag at 0.3 is fifteen times that base rate, so the project names its content.
# Below it, the project's content is general and weighs every competency by the tagger's belief.
CONFIDENT_TAG: Final = 0.3
# Administrative words that project names carry and course texts rarely do; left in, they tie a project (by
# BM25 and by meaning) to whichever competency mentions 培训 or 骨干 (青年教师带教与培训指导), not to what the
# project teaches. Who the project is for (stage, rural, role) is eligibility's business, not content.
PROJECT_WORDS: Final = (
    "培训者", "培训师", "培训", "研修", "骨干", "高级", "提升", "能力", "教师", "中小学", "乡村", "项目", "示范",
    "省外", "访学", "优秀", "卓越", "领军", "递进", "浸润式", "帮扶", "县级", "省级", "全省", "团队",
)  # fmt: skip
# Extra text columns of a project row that describe its content, in the order they are joined.
CONTENT_COLUMNS: Final = ("name", "description", "content", "培训内容", "target_text")
SHOWN_COMPETENCIES: Final = 5
REASON_COMPETENCIES: Final = 2
CLASS_ITERATIONS: Final = 15
EXCHANGE_PASSES: Final = 50
# rosters up to this size are matched to seats exactly (well under a second)
EXACT_MATCHING: Final = 600
RANDOM_SPLITS: Final = 20
LIST_SEPARATORS: Final = re.compile(r"[;；、,，]")
# "(1)", "（二）" … at the end of a name: parallel runs of one project by different providers
RUN_SUFFIX: Final = re.compile(r"[（(]\s*[0-9一二三四五六七八九十]+\s*[)）]\s*$")

RULES: Final = {
    "scope": "不在项目范围",
    "stage": "学段不符",
    "subject": "学科不符",
    "school_type": "学校类型不符",
    "role": "岗位不符",
    "title": "职称未达要求",
    "years": "教龄未达要求",
    "bar": "三年内不得参加集中培训",
    "repeat": "近期已完成同一内容培训",
}
UNREGISTERED: Final = "未登记"
BAR_STATUS_ZH: Final = {"no_show": "未参训", "dropped": "中途退出（被劝退或退训）", "unfinished": "未结业"}
CONTENT_SOURCE_ZH: Final = {
    "given": "项目表指定",
    "inferred": "依据项目名称与说明推断",
    "general": "项目内容较宽泛，按推断的能力分布综合计算",
}


class SelectionError(ValueError):
    """A project or allocation that cannot be used; the message is for the clerk who supplied it."""


# ---------------------------------------------------------------------------------------------------------
# the project


def zh_label(spec: EnumSpec, value: object) -> str:
    """The Chinese label of a contract value (its first accepted spelling), or the value itself."""
    if _missing(value):
        return UNREGISTERED
    spellings = spec.aliases.get(str(value))
    return spellings[0] if spellings else str(value)


def _labels(spec: EnumSpec, values: Iterable[str]) -> str:
    return "、".join(zh_label(spec, v) for v in values)


def _text(value: object) -> str:
    return unicodedata.normalize("NFKC", str(value)).strip()


def _missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def as_list(cell: object) -> list[str]:
    """A list cell of any origin (Parquet list, numpy array, 'a;b' text of an extra column), cleaned."""
    if isinstance(cell, list | tuple | np.ndarray | pd.Series):
        return [_text(v) for v in cell if not _missing(v) and _text(v)]
    if isinstance(cell, str):
        return [_text(v) for v in LIST_SEPARATORS.split(cell) if _text(v)]
    return []


def parse_county_quotas(cell: object) -> dict[str, int]:
    """Per-county allocations (各县名额) from a mapping or from text such as '修水县:50;武宁县:40'."""
    if isinstance(cell, Mapping):
        pairs = [(str(k), v) for k, v in cell.items()]
    else:
        pairs = []
        for part in as_list(cell):
            county, sep, number = part.replace("：", ":").rpartition(":")
            if not sep:
                raise SelectionError(f"各县名额“{part}”应写作 县区:人数，如 修水县:50")
            pairs.append((county, number))
    quotas: dict[str, int] = {}
    for county, number in pairs:
        try:
            value = int(str(number).strip())
        except ValueError:
            raise SelectionError(f"{county} 的名额“{number}”不是整数") from None
        if value < 0:
            raise SelectionError(f"{county} 的名额不能为负数（{value}）")
        quotas[_text(county)] = value
    return quotas


def _optional_int(value: object) -> int | None:
    return None if _missing(value) else int(value)  # type: ignore[call-overload]


def _float(value: object) -> float:
    return 0.0 if _missing(value) else float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Project:
    """培训项目: one row of the projects contract, with the extra columns selection reads
    (target_school_types, excluded_subjects, county_quotas, competencies, description)."""

    project_id: str
    name: str
    text: str
    target_stages: tuple[str, ...]
    target_subjects: tuple[str, ...]
    excluded_subjects: tuple[str, ...]
    target_roles: tuple[str, ...]
    target_school_types: tuple[str, ...]
    min_title: str | None
    min_years: int | None
    scope_counties: tuple[str, ...]
    format: str | None
    days: float
    online_hours: float
    quota: int | None
    class_size: int
    county_quotas: tuple[tuple[str, int], ...]
    competencies: tuple[str, ...]

    @classmethod
    def from_row(cls, row: Mapping[Any, Any], default_class_size: int) -> Project:
        parts = [_text(row[c]) for c in CONTENT_COLUMNS if c in row and not _missing(row[c])]
        min_title = row.get("min_title")
        fmt = row.get("format")
        return cls(
            project_id=_text(row["project_id"]),
            name=_text(row["name"]),
            text="。".join(dict.fromkeys(p for p in parts if p)),
            target_stages=tuple(as_list(row.get("target_stages"))),
            target_subjects=tuple(as_list(row.get("target_subjects"))),
            excluded_subjects=tuple(as_list(row.get("excluded_subjects"))),
            target_roles=tuple(as_list(row.get("target_roles"))),
            target_school_types=tuple(as_list(row.get("target_school_types"))),
            min_title=None if _missing(min_title) else _text(min_title),
            min_years=_optional_int(row.get("min_years")),
            scope_counties=tuple(as_list(row.get("scope_counties"))),
            format=None if _missing(fmt) else _text(fmt),
            days=_float(row.get("days")),
            online_hours=_float(row.get("online_hours")),
            quota=_optional_int(row.get("quota")),
            class_size=_optional_int(row.get("class_size")) or default_class_size,
            county_quotas=tuple(parse_county_quotas(row.get("county_quotas")).items()),
            competencies=tuple(as_list(row.get("competencies"))),
        )

    def face_to_face(self, policy: Policy) -> bool:
        """Whether the three-year bar guards this project: a face-to-face format, or days of it when the
        format is not given."""
        return self.format in policy.bar_formats if self.format else self.days > 0

    @property
    def scope_text(self) -> str:
        if not self.scope_counties:
            return "全省"
        shown = "、".join(self.scope_counties[:5])
        more = f"等 {len(self.scope_counties)} 个县区" if len(self.scope_counties) > 5 else ""
        return shown + more


def project_table(ws: Workspace) -> pd.DataFrame:
    """The workspace's projects table, or the built-in Jiangxi 2022 table (seed 004) when it has none."""
    return ws.read_table("projects") if ws.has_table("projects") else load_jiangxi_projects()


# ---------------------------------------------------------------------------------------------------------
# what a project teaches


@dataclass(frozen=True)
class ProjectContent:
    """The competencies a project works on: ``weights`` over the taxonomy (sum 1), ``codes`` the ones shown
    (largest weight first) with their ``shares`` of the weight, ``source`` given / inferred / general,
    ``confidence`` the top tag's probability."""

    codes: tuple[str, ...]
    shares: tuple[float, ...]
    weights: np.ndarray
    source: str
    confidence: float


def _strip_project_words(text: str) -> str:
    for word in sorted(PROJECT_WORDS, key=len, reverse=True):
        text = text.replace(word, " ")
    return text


def _content(weights: np.ndarray, codes: np.ndarray, source: str, confidence: float) -> ProjectContent:
    weights = weights / weights.sum()
    order = np.argsort(-weights, kind="stable")
    shown = order[weights[order] > 0][:SHOWN_COMPETENCIES]
    return ProjectContent(
        tuple(codes[shown].tolist()), tuple(weights[shown].tolist()), weights, source, float(confidence)
    )


def infer_contents(art: Artifacts, encoder: Encoder, projects: pd.DataFrame) -> dict[str, ProjectContent]:
    """Each project's content, inferred like an untagged course's: its text embedded, BM25 of every
    competency's words against it, and the tagger fitted on the catalogue's tagged courses.

    A project whose row names competencies (an extra ``competencies`` column) keeps them. Tags follow the
    course rule (the top one, then any above one half) when the top one is confident; otherwise the project
    is general and every competency weighs by its probability.
    """
    cat = art.catalogue
    codes = np.asarray(cat.comp_codes).astype(str)
    rows = [Project.from_row(r, art.policy.class_size) for r in projects.to_dict("records")]
    contents: dict[str, ProjectContent] = {}
    for p in rows:
        given = np.isin(codes, p.competencies).astype(np.float64)
        if given.any():
            contents[p.project_id] = _content(given, codes, "given", 1.0)
    todo = [p for p in rows if p.project_id not in contents]
    if not todo:
        return contents
    courses = art.courses.set_index("course_id").loc[cat.course_ids].reset_index()
    texts = [_strip_project_words(p.text) for p in todo]
    vectors = encoder.encode_passages(texts)
    bm25 = BM25().fit(course_texts(courses) + texts)
    lexical = bm25.score(competency_texts(art.taxonomy)).toarray().astype(np.float64)
    lexical /= lexical.max(axis=1, keepdims=True) + 1e-9
    n_courses = len(courses)
    labels = np.stack([np.isin(codes, as_list(c)) for c in courses["competencies"]]).astype(np.float64)
    tagged = labels.sum(axis=1) > 0
    if "competencies_inferred" in courses:
        tagged &= ~courses["competencies_inferred"].fillna(False).to_numpy(dtype=bool)
    if tagged.sum() >= 10 and labels[tagged].mean() < 1:
        tagger = CompetencyTagger().fit(
            cat.vectors[tagged], cat.comp_vectors, lexical[:, :n_courses].T[tagged], labels[tagged]
        )
        proba = tagger.predict_proba(vectors, lexical[:, n_courses:].T)
    else:
        # as in training: without tagged examples, competencies rank by similarity alone
        proba = np.maximum(vectors @ cat.comp_vectors.T, 1e-6).astype(np.float64)
    tags, confidence = top_tags(proba)
    for i, p in enumerate(todo):
        if confidence[i] >= CONFIDENT_TAG:
            weights = np.zeros(len(codes))
            weights[tags[i]] = proba[i, tags[i]]
            contents[p.project_id] = _content(weights, codes, "inferred", confidence[i])
        else:
            contents[p.project_id] = _content(proba[i].copy(), codes, "general", confidence[i])
    return contents


# ---------------------------------------------------------------------------------------------------------
# eligibility


def _zh_series(spec: EnumSpec, values: pd.Series) -> pd.Series:
    labels = {v: zh_label(spec, v) for v in spec.values}
    return values.map(labels).fillna(values.astype("string")).fillna(UNREGISTERED).astype(str)


def _column(t: pd.DataFrame, name: str) -> pd.Series:
    """A teacher column, or an all-missing one when the teacher rows do not carry it."""
    return t[name] if name in t else pd.Series(pd.NA, index=t.index, dtype=object)


def _any_in(lists: pd.Series, wanted: Sequence[str]) -> np.ndarray:
    """Rows whose list cell (roles) shares a value with ``wanted``."""
    hit = lists.explode().isin(list(wanted))
    return hit.groupby(level=0).any().reindex(lists.index, fill_value=False).to_numpy(dtype=bool)


def _event_dates(records: pd.DataFrame) -> pd.Series:
    end = pd.to_datetime(records["end_date"]) if "end_date" in records else pd.Series(pd.NaT, records.index)
    return end.fillna(pd.to_datetime(records["start_date"]))


def run_name(name: object) -> str:
    """A project name without its run number: '…帮扶培训(2)' and '…帮扶培训(1)' teach the same content."""
    return "" if _missing(name) else RUN_SUFFIX.sub("", _text(name)).strip()


def _project_records(records: pd.DataFrame, ids: pd.Index) -> pd.DataFrame:
    """The records of projects (国培/省培 runs, named by project_id or project_name) of these teachers."""
    if records.empty:
        return records.assign(t=np.empty(0, np.int64))
    named = pd.Series(False, index=records.index)
    for column in ("project_id", "project_name"):
        if column in records:
            named |= records[column].notna()
    rec = records[named]
    return rec.assign(t=positions(ids, rec["teacher_id"])).loc[lambda r: r["t"] >= 0]


def _latest_per_teacher(rec: pd.DataFrame, mask: np.ndarray, when: pd.Series) -> pd.DataFrame:
    hit = rec[mask].assign(_when=when[mask])
    return hit.sort_values(["t", "_when"]).drop_duplicates("t", keep="last")


def _record_title(rec: pd.DataFrame) -> pd.Series:
    name = rec["project_name"] if "project_name" in rec else pd.Series(pd.NA, index=rec.index)
    return name.fillna(rec.get("project_id", "")).astype(str)


def _bar(rec: pd.DataFrame, policy: Policy, asof: pd.Timestamp, n: int) -> tuple[np.ndarray, pd.Series]:
    """Teachers under the three-year bar: a face-to-face project record that ended as no-show, dropped or
    unfinished (still enrolled after its end date) within ``policy.bar_years`` before ``asof``."""
    barred = np.zeros(n, dtype=bool)
    reasons = pd.Series("", index=range(n), dtype=object)
    if rec.empty or policy.bar_years <= 0:
        return barred, reasons
    end = pd.to_datetime(rec["end_date"]) if "end_date" in rec else pd.Series(pd.NaT, index=rec.index)
    status = rec["status"].astype(str).where(~((rec["status"] == "enrolled") & (end < asof)), "unfinished")
    when = _event_dates(rec)
    fmt = rec["format"] if "format" in rec else pd.Series(pd.NA, index=rec.index)
    mask = (
        status.isin(policy.bar_statuses)
        & fmt.isin(policy.bar_formats)
        & (when > asof - pd.DateOffset(years=policy.bar_years))
        & (when <= asof)
    ).to_numpy(dtype=bool)
    latest = _latest_per_teacher(rec.assign(_status=status), mask, when)
    until = latest["_when"] + pd.DateOffset(years=policy.bar_years)
    text = (
        "三年内不得参加集中培训："
        + latest["_when"].dt.strftime("%Y年%m月")
        + "参加「"
        + _record_title(latest)
        + "」"
        + latest["_status"].map(BAR_STATUS_ZH)
        + "，"
        + until.dt.strftime("%Y年%m月%d日")
        + "前不得参加省级集中培训项目"
    )
    t = latest["t"].to_numpy()
    barred[t] = True
    reasons.iloc[t] = text.to_numpy()
    return barred, reasons


def _repeat(
    rec: pd.DataFrame, project: Project, asof: pd.Timestamp, years: int, n: int
) -> tuple[np.ndarray, pd.Series]:
    """Teachers who completed a run of the same project (same id, or same name but for the run number)
    within ``years`` before ``asof``."""
    repeated = np.zeros(n, dtype=bool)
    reasons = pd.Series("", index=range(n), dtype=object)
    if rec.empty or years <= 0:
        return repeated, reasons
    when = _event_dates(rec)
    names = rec["project_name"] if "project_name" in rec else pd.Series(pd.NA, index=rec.index)
    ids = rec["project_id"].astype(str) if "project_id" in rec else pd.Series("", index=rec.index)
    unique = pd.Series(names.dropna().unique())
    same_name = names.map(dict(zip(unique, unique.map(run_name), strict=True))) == run_name(project.name)
    mask = (
        (rec["status"] == "completed")
        & ((ids == project.project_id) | same_name)
        & (when > asof - pd.DateOffset(years=years))
        & (when <= asof)
    ).to_numpy(dtype=bool)
    latest = _latest_per_teacher(rec, mask, when)
    text = (
        "近期已完成同一内容培训："
        + latest["_when"].dt.strftime("%Y年%m月")
        + "结业「"
        + _record_title(latest)
        + f"」（{years} 年内不重复参训）"
    )
    t = latest["t"].to_numpy()
    repeated[t] = True
    reasons.iloc[t] = text.to_numpy()
    return repeated, reasons


def eligibility(
    teachers: pd.DataFrame,
    project: Project,
    records: pd.DataFrame,
    policy: Policy,
    asof: pd.Timestamp,
    repeat_years: int = REPEAT_YEARS,
) -> pd.DataFrame:
    """Who may join ``project``: one row per teacher (teacher_id, one boolean column per rule of ``RULES``
    that is True where the teacher fails it, ``eligible``, ``reason`` — the failed rules in Chinese, joined
    by '；', empty for the eligible).

    Unknown values fail a rule that needs them (a minimum title against an unregistered title): the clerk can
    fix the record, while a guess would put the wrong teacher on a provincial roster.
    """
    t = teachers.reset_index(drop=True)
    n = len(t)
    fails: dict[str, np.ndarray] = {}
    texts: dict[str, pd.Series] = {}
    if project.scope_counties:
        county = _column(t, "county").astype("string")
        fails["scope"] = ~county.isin(project.scope_counties).fillna(False).to_numpy(dtype=bool)
        texts["scope"] = f"不在项目范围：本项目限{project.scope_text}，该教师所在县区为" + county.fillna(
            UNREGISTERED
        )
    if project.target_stages:
        fails["stage"] = ~t["stage"].isin(project.target_stages).to_numpy(dtype=bool)
        texts["stage"] = (
            f"学段不符：本项目面向{_labels(STAGE, project.target_stages)}，该教师为"
            + _zh_series(STAGE, t["stage"])
        )
    subject = t["subject"].astype("string").str.strip()
    if project.target_subjects or project.excluded_subjects:
        outside = (
            ~subject.isin(project.target_subjects).fillna(False)
            if project.target_subjects
            else pd.Series(False, index=t.index)
        )
        excluded = subject.isin(project.excluded_subjects).fillna(False)
        fails["subject"] = (outside | excluded).to_numpy(dtype=bool)
        taught = "，该教师任教" + subject.fillna(UNREGISTERED)
        texts["subject"] = pd.Series(
            np.where(
                outside,
                f"学科不符：本项目面向{'、'.join(project.target_subjects)}学科" + taught,
                f"学科不符：本项目不含{'、'.join(project.excluded_subjects)}学科" + taught,
            ),
            index=t.index,
        )
    if project.target_school_types:
        school = _column(t, "school_type")
        fails["school_type"] = ~school.isin(project.target_school_types).fillna(False).to_numpy(dtype=bool)
        texts["school_type"] = (
            f"学校类型不符：本项目面向{_labels(SCHOOL_TYPE, project.target_school_types)}学校教师，该教师所在学校为"
            + _zh_series(SCHOOL_TYPE, school)
        )
    if project.target_roles:
        roles = _column(t, "roles")
        fails["role"] = ~_any_in(roles, project.target_roles)
        texts["role"] = pd.Series(
            f"岗位不符：本项目面向{_labels(ROLE, project.target_roles)}，该教师未登记此岗位", index=t.index
        )
    if project.min_title:
        order = {v: i for i, v in enumerate(TITLE.values)}
        title = _column(t, "title")
        rank = title.map(order).astype(float)
        fails["title"] = ~(rank >= order.get(project.min_title, 0)).to_numpy(dtype=bool)
        need = zh_label(TITLE, project.min_title)
        texts["title"] = pd.Series(
            np.where(
                rank.isna(),
                f"职称未登记，无法确认是否达到{need}",
                f"职称未达要求：本项目要求{need}及以上，该教师为" + _zh_series(TITLE, title),
            ),
            index=t.index,
        )
    if project.min_years is not None:
        years = pd.to_numeric(_column(t, "years_teaching"), errors="coerce")
        fails["years"] = ~(years >= project.min_years).fillna(False).to_numpy(dtype=bool)
        texts["years"] = pd.Series(
            np.where(
                years.isna(),
                f"教龄未登记，无法确认是否达到 {project.min_years} 年",
                f"教龄未达要求：本项目要求教龄 {project.min_years} 年及以上，该教师教龄 "
                + years.astype("Int64").astype(str)
                + " 年",
            ),
            index=t.index,
        )
    rec = _project_records(records, pd.Index(t["teacher_id"]))
    if project.face_to_face(policy):
        fails["bar"], texts["bar"] = _bar(rec, policy, asof, n)
    fails["repeat"], texts["repeat"] = _repeat(rec, project, asof, repeat_years, n)

    out = pd.DataFrame({"teacher_id": t["teacher_id"].to_numpy()})
    reason = pd.Series("", index=t.index, dtype=object)
    for rule in RULES:
        failed = fails.get(rule, np.zeros(n, dtype=bool))
        out[rule] = failed
        if failed.any():
            text = texts[rule].astype(str)
            reason = reason.where(~failed, reason + np.where(reason == "", "", "；") + text)
    out["eligible"] = ~out[list(RULES)].any(axis=1)
    out["reason"] = reason.to_numpy()
    return out


# ---------------------------------------------------------------------------------------------------------
# ranking and quotas


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


# ---------------------------------------------------------------------------------------------------------
# classes


def class_sizes(n: int, class_size: int) -> np.ndarray:
    """The fewest classes of at most ``class_size`` that hold ``n`` trainees, sizes differing by at most one
    (360 trainees in classes of 50: eight classes of 45, not seven of 50 and one of 10)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = -(-n // class_size)
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    return sizes


def _seats_by_group(groups: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(G, k) seats of each group in each class such that every class is full and every group is spread as
    evenly as it can be: deal the trainees, ordered by group, round the classes like cards."""
    order = np.argsort(groups, kind="stable")
    k = len(sizes)
    dealt = np.empty(len(groups), dtype=np.int64)
    # the i-th card goes to class i mod k; classes that take one card fewer are the last ones, as in `sizes`
    dealt[order] = np.arange(len(groups)) % k
    seats = np.zeros((int(groups.max()) + 1, k), dtype=np.int64)
    np.add.at(seats, (groups, dealt), 1)
    return seats


def _fill(cost: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Classes filled to ``capacity`` at low total ``cost`` (n, k); sizes never change.

    Up to ``EXACT_MATCHING`` trainees: the exact matching of trainees to seats. Beyond it (the matching grows
    with the cube of the roster: minutes for 5,000): a start that seats trainees, ordered by their nearest
    class, in class order, then exchanges between two classes while one lowers the cost — within a fraction
    of a percent of the exact cost on need profiles.
    """
    n, k = cost.shape
    if n <= EXACT_MATCHING:
        seat = np.repeat(np.arange(k), capacity)
        rows, cols = linear_sum_assignment(cost[:, seat])
        exact = np.empty(n, dtype=np.int64)
        exact[rows] = seat[cols]
        return exact
    nearest = cost.argmin(axis=1)
    order = np.lexsort((cost[np.arange(n), nearest], nearest))
    label = np.empty(n, dtype=np.int64)
    label[order] = np.repeat(np.arange(k), capacity)
    for _ in range(EXCHANGE_PASSES):
        # the best any member of class a gains by moving to b; a swap between a and b can only pay when
        # the two best moves together do, which leaves few pairs to look at after the first pass
        moves = cost - cost[np.arange(n), label][:, None]
        order = np.argsort(label, kind="stable")
        held = np.flatnonzero(np.bincount(label, minlength=k))
        best = np.zeros((k, k))
        best[held] = np.minimum.reduceat(moves[order], np.searchsorted(label[order], held), axis=0)
        pairs = np.argwhere(np.triu(best + best.T < -1e-9, 1))
        if not len(pairs):
            break
        for a, b in pairs:
            in_a, in_b = np.flatnonzero(label == a), np.flatnonzero(label == b)
            m = min(len(in_a), len(in_b))
            # pairing the i-th best mover of each side gives gains that only grow with i, so the good swaps
            # are the first few pairs
            move_a = in_a[np.argsort(cost[in_a, b] - cost[in_a, a])[:m]]
            move_b = in_b[np.argsort(cost[in_b, a] - cost[in_b, b])[:m]]
            change = cost[move_a, b] - cost[move_a, a] + cost[move_b, a] - cost[move_b, b]
            good = int((change < -1e-9).sum())
            label[move_a[:good]], label[move_b[:good]] = b, a
    return label


def _assign(cost: np.ndarray, sizes: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Each trainee's class, every class filled to its size (and, with ``groups``, every group to its dealt
    seats in each class, which makes each group a problem of its own)."""
    if groups is None:
        return _fill(cost, sizes)
    label = np.empty(len(cost), dtype=np.int64)
    seats = _seats_by_group(groups, sizes)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        label[members] = _fill(cost[members], seats[g])
    return label


def _sq_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(n, k) squared Euclidean distances, without the (n, k, d) intermediate."""
    d = (x**2).sum(axis=1)[:, None] - 2.0 * x @ centres.T + (centres**2).sum(axis=1)[None, :]
    return np.maximum(d, 0.0)


def _kmeanspp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn in proportion to the squared distance to the nearest one."""
    centres = [x[rng.integers(len(x))]]
    nearest = _sq_distances(x, centres[0][None])[:, 0]
    for _ in range(1, k):
        total = nearest.sum()
        pick = rng.choice(len(x), p=nearest / total) if total > 0 else rng.integers(len(x))
        centres.append(x[pick])
        nearest = np.minimum(nearest, _sq_distances(x, x[pick][None])[:, 0])
    return np.asarray(centres)


def form_classes(
    features: np.ndarray, class_size: int, groups: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Class (0..k-1) of each trainee: size-constrained k-means on the need profiles ``features`` (n, d).

    Lloyd's iterations whose assignment step fills the seats of ``class_sizes`` (``_fill``), so every class
    has its size exactly. With ``groups`` (e.g. county codes) each class also takes an even share of
    every group (混合编班), and within that share the trainees whose needs fit it best.
    """
    x = np.asarray(features, dtype=np.float64)
    sizes = class_sizes(len(x), class_size)
    if len(sizes) <= 1:
        return np.zeros(len(x), dtype=np.int64)
    rng = np.random.default_rng(seed)
    centres = _kmeanspp(x, len(sizes), rng)
    label = np.full(len(x), -1, dtype=np.int64)
    for _ in range(CLASS_ITERATIONS):
        cost = _sq_distances(x, centres)
        new = _assign(cost, sizes, groups)
        if np.array_equal(new, label):
            break
        label = new
        centres = np.stack([x[label == j].mean(axis=0) for j in range(len(sizes))])
    return label


def spread(features: np.ndarray, label: np.ndarray) -> float:
    """Root-mean-square distance of each trainee's need profile to its class's mean profile (gap points)."""
    x = np.asarray(features, dtype=np.float64)
    if len(x) == 0:
        return float("nan")
    k = int(label.max()) + 1
    counts = np.bincount(label, minlength=k)[:, None]
    centres = np.stack([np.bincount(label, x[:, j], minlength=k) for j in range(x.shape[1])], axis=1) / counts
    return float(np.sqrt(((x - centres[label]) ** 2).sum(axis=1).mean()))


def random_spread(
    features: np.ndarray, label: np.ndarray, seed: int = 0, splits: int = RANDOM_SPLITS
) -> float:
    """The mean ``spread`` of random splits into classes of the same sizes: the baseline 编班 by hand."""
    rng = np.random.default_rng(seed)
    return float(np.mean([spread(features, rng.permutation(label)) for _ in range(splits)]))


# ---------------------------------------------------------------------------------------------------------
# the selection


@dataclass(frozen=True)
class Cost:
    """经费 per the policy: 集中培训 ``offline_yuan_per_day`` per trainee-day, 网络研修 per trainee 学时."""

    days: float
    online_hours: float
    offline_yuan_per_trainee: float
    online_yuan_per_trainee: float
    trainees: int

    @property
    def per_trainee_yuan(self) -> float:
        return self.offline_yuan_per_trainee + self.online_yuan_per_trainee

    @property
    def total_yuan(self) -> float:
        return self.per_trainee_yuan * self.trainees


@dataclass(frozen=True)
class Selection:
    """A project's roster and classes.

    - ``roster``: the selected, best first: rank, teacher_id, county, school_id, school_type, stage, subject,
      title, years_teaching, need, rural_bonus, score, prior_share, class_no, reason.
    - ``ranked``: every eligible teacher with need, rural_bonus, score, rank and ``selected``.
    - ``excluded``: teacher_id, county, school_id, the failed rules (booleans) and ``reason``.
    - ``classes``: class_no, class_label, n_teachers, n_counties, counties, share_rural, mean_need,
      common_gaps, cost_yuan, visible (False where a restricted view may not show the class's figures).
    - ``class_portrait``: the cohort portrait by class_no.
    - ``allocations``: county, allocated, eligible, selected, unfilled (empty without allocations).
    """

    project: Project
    content: ProjectContent
    content_names: tuple[str, ...]
    asof: pd.Timestamp
    policy_name: str
    rural_priority_weight: float
    mix_counties: bool
    model_version: str
    n_considered: int
    roster: pd.DataFrame
    ranked: pd.DataFrame
    excluded: pd.DataFrame
    classes: pd.DataFrame
    class_portrait: CohortPortrait
    allocations: pd.DataFrame
    cost: Cost
    spread: float
    random_spread: float
    notes: tuple[str, ...] = field(default=())

    @property
    def n_eligible(self) -> int:
        return len(self.ranked)

    def exclusion_counts(self) -> pd.DataFrame:
        """rule, label, n_teachers failing it (a teacher may fail several), in the order of ``RULES``."""
        return pd.DataFrame(
            {
                "rule": list(RULES),
                "label": list(RULES.values()),
                "n_teachers": [int(self.excluded[r].sum()) for r in RULES],
            }
        )

    def hiding_classes(self, numbers: Iterable[int]) -> Selection:
        """The same selection with the figures of these classes withheld: their size stays, their portrait
        and aggregates (counties, rural share, need, common gaps) go."""
        hidden_numbers = set(numbers)
        if not hidden_numbers:
            return self
        classes = self.classes.copy()
        hidden = classes["class_no"].isin(hidden_numbers)
        classes.loc[hidden, "visible"] = False
        classes.loc[hidden, ["n_counties", "share_rural", "mean_need"]] = np.nan
        classes.loc[hidden, ["counties", "common_gaps"]] = ""

        def shown(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[~frame["class_no"].isin(hidden_numbers)].reset_index(drop=True)

        p = self.class_portrait
        portrait = replace(
            p, groups=shown(p.groups), competencies=shown(p.competencies), common_gaps=shown(p.common_gaps)
        )
        return replace(self, classes=classes, class_portrait=portrait)

    def within(self, column: str, value: str, teachers: pd.DataFrame) -> Selection:
        """The selection as a trainer of ``column == value`` (county, city, province) may see it: the roster,
        ranking, exclusions and allocations of their own teachers; class figures only for classes wholly
        inside the area (a class with outside members shows its size and how many are theirs)."""
        area = teachers[teachers[column].astype(str) == value]
        inside = pd.Index(area["teacher_id"].astype(str))

        def mine(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["teacher_id"].isin(inside)].reset_index(drop=True)

        roster = mine(self.roster)
        mine_per_class = roster.groupby("class_no").size()
        classes = self.classes[self.classes["class_no"].isin(mine_per_class.index)].copy()
        classes["n_mine"] = classes["class_no"].map(mine_per_class).astype(int)
        counties = set(area["county"].dropna().astype(str))
        restricted = replace(
            self,
            roster=roster,
            ranked=mine(self.ranked),
            excluded=mine(self.excluded),
            classes=classes.reset_index(drop=True),
            allocations=self.allocations[self.allocations["county"].isin(counties)].reset_index(drop=True),
            n_considered=len(inside),
        )
        mixed = classes.loc[classes["n_mine"] < classes["n_teachers"], "class_no"]
        outside = set(self.classes["class_no"]) - set(classes["class_no"])
        return restricted.hiding_classes({*mixed, *outside})


@dataclass(frozen=True)
class SelectionContext:
    """What selection reads from a workspace, loaded once per bundle version (the service keeps one)."""

    version: str
    art: Artifacts
    teachers: pd.DataFrame
    competencies: pd.DataFrame
    records: pd.DataFrame
    projects: pd.DataFrame
    contents: Mapping[str, ProjectContent]
    target_level: float

    @classmethod
    def load(
        cls, ws: Workspace, config: Settings | None = None, encoder: Encoder | None = None
    ) -> SelectionContext:
        config = config or settings()
        art = load_current(ws.bundles_dir)
        projects = project_table(ws)
        encoder = encoder or Encoder(config.encoder_model, cache_dir=config.model_cache)
        records = ws.read_table("training_records") if ws.has_table("training_records") else pd.DataFrame()
        return cls(
            version=art.version,
            art=art,
            teachers=pd.read_parquet(ws.portraits_dir / "teachers.parquet"),
            competencies=pd.read_parquet(
                ws.portraits_dir / "competencies.parquet",
                columns=["teacher_id", "competency", "estimate", "is_prior", "gap"],
            ),
            records=records,
            projects=projects,
            contents=infer_contents(art, encoder, projects),
            target_level=config.target_level,
        )

    def project(self, project_id: str) -> Project:
        match = self.projects[self.projects["project_id"].astype(str) == str(project_id)]
        if match.empty:
            known = "、".join(self.projects["project_id"].astype(str).head(5))
            raise SelectionError(f"没有编号为 {project_id} 的培训项目（已有项目如 {known} 等）。")
        return Project.from_row(match.iloc[0].to_dict(), self.art.policy.class_size)

    def project_list(self) -> list[Project]:
        return [Project.from_row(r, self.art.policy.class_size) for r in self.projects.to_dict("records")]


def _gap_matrix(ids: pd.Index, competencies: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
    """(teachers, competencies) gaps of these teachers; a missing estimate counts as the column's mean gap."""
    t = positions(ids, competencies["teacher_id"])
    k = positions(pd.Index(codes), competencies["competency"])
    keep = (t >= 0) & (k >= 0)
    m = np.full((len(ids), len(codes)), np.nan)
    m[t[keep], k[keep]] = pd.to_numeric(competencies["gap"], errors="coerce").to_numpy(dtype=float)[keep]
    if m.size == 0:
        return m
    means = np.nan_to_num(np.nanmean(np.where(np.isnan(m).all(axis=0), 0.0, m), axis=0))
    return np.where(np.isnan(m), means[None, :], m)


def _reasons(
    roster: pd.DataFrame,
    gaps: np.ndarray,
    content: ProjectContent,
    codes: np.ndarray,
    names: Mapping[str, str],
    percentile: np.ndarray,
    rural_weight: float,
    allocations: Mapping[str, int] | None,
) -> pd.Series:
    """Why each selected teacher is on the roster: need and its percentile, the project competencies where
    their gap weighs most, the rural priority, an estimate resting on priors, the county's seat."""
    if roster.empty:
        return pd.Series([], index=roster.index, dtype=object)
    shown = np.flatnonzero(np.isin(codes, content.codes))
    contribution = gaps[:, shown] * content.weights[shown][None, :]
    order = np.argsort(-contribution, axis=1, kind="stable")[:, :REASON_COMPETENCIES]
    reason = (
        "需求得分 "
        + roster["need"].map("{:.2f}".format)
        + "（高于 "
        + pd.Series(percentile, index=roster.index).map("{:.0f}".format)
        + "% 的符合条件教师）"
    )
    for j in range(order.shape[1]):
        col = shown[order[:, j]]
        part = (
            "「"
            + pd.Series(codes[col], index=roster.index).map(names)
            + "」差距 "
            + pd.Series(gaps[np.arange(len(roster)), col], index=roster.index).round().astype(int).astype(str)
            + " 分"
        )
        reason = reason + np.where(j == 0, "：", "、") + part
    rural = roster["rural_bonus"] > 0
    reason = reason.where(~rural, reason + f"；乡村学校教师优先（+{rural_weight:.2f}）")
    prior = roster["prior_share"] > 0.5
    reason = reason.where(~prior, reason + "；尚未测评，能力按同学段同学科教师估计")
    if allocations:
        seat = roster.groupby("county", sort=False).cumcount() + 1
        quota = roster["county"].map(dict(allocations)).astype(int).astype(str)
        reason = reason + "；" + roster["county"] + "名额第 " + seat.astype(str) + "/" + quota + " 位"
    return reason


def _county_summary(counties: pd.Series) -> str:
    """'修水县、武宁县、于都县等 12 个县区': the largest three counties of a class, by head count."""
    ranked = counties.value_counts().index.astype(str)
    more = f"等 {len(ranked)} 个县区" if len(ranked) > 3 else ""
    return "、".join(ranked[:3]) + more


def _class_table(
    roster: pd.DataFrame, portrait: CohortPortrait, names: Mapping[str, str], cost: Cost
) -> pd.DataFrame:
    by = roster.groupby("class_no")
    table = pd.DataFrame(
        {
            "n_teachers": by.size(),
            "n_counties": by["county"].nunique(),
            "counties": by["county"].agg(_county_summary),
            "share_rural": by["school_type"].agg(lambda s: float((s == "rural").mean())),
            "mean_need": by["need"].mean(),
        }
    ).reset_index()
    gaps = portrait.common_gaps.assign(name=lambda f: f["competency"].map(names).fillna(f["competency"]))
    text = (
        gaps.sort_values(["class_no", "rank"]).groupby("class_no")["name"].agg(lambda s: "、".join(s.head(3)))
    )
    table["class_label"] = "第 " + table["class_no"].astype(str) + " 班"
    table["common_gaps"] = table["class_no"].map(text.astype(object)).astype(object).fillna("")
    table["cost_yuan"] = table["n_teachers"] * cost.per_trainee_yuan
    table["visible"] = True
    first = ["class_no", "class_label", "n_teachers", "n_counties", "counties", "share_rural", "mean_need"]
    return table[[*first, "common_gaps", "cost_yuan", "visible"]]


def select_trainees(
    ctx: SelectionContext,
    project_id: str,
    mix_counties: bool = False,
    allocations: Mapping[str, int] | None = None,
    quota: int | None = None,
    asof: pd.Timestamp | None = None,
    rural_priority_weight: float | None = None,
    repeat_years: int = REPEAT_YEARS,
    seed: int = 0,
) -> Selection:
    """Select trainees for ``project_id`` and split them into classes.

    Score = need (0–1, see ``need_scores``) + ``rural_priority_weight`` (the policy's, unless given) for a
    teacher at a rural school — the policy's 重点向乡村学校倾斜 as one explicit number. Ties go to the teacher
    with fewer training hours in the last three years (每位教师都有参加培训的机会), then to the smaller id.
    ``allocations`` (county -> seats) replace the project's own county_quotas column; ``quota`` overrides
    the project's quota; ``asof`` (default: the bundle's data date) dates the three-year bar.
    """
    art, policy = ctx.art, ctx.art.policy
    project = ctx.project(project_id)
    asof = pd.Timestamp(asof) if asof is not None else art.asof
    weight = policy.rural_priority_weight if rural_priority_weight is None else float(rural_priority_weight)
    allocated = dict(allocations) if allocations is not None else dict(project.county_quotas)
    seats = quota if quota is not None else project.quota
    if project.scope_counties and allocated:
        outside = sorted(set(allocated) - set(project.scope_counties))
        if outside:
            raise SelectionError(
                f"名额分配中的 {'、'.join(outside)} 不在项目范围（{project.scope_text}）内。"
            )
    codes = np.asarray(art.catalogue.comp_codes).astype(str)
    names = dict(zip(art.taxonomy["code"].astype(str), art.taxonomy["name"].astype(str), strict=False))
    content = ctx.contents[project.project_id]
    notes: list[str] = []
    if content.source == "general":
        notes.append(
            "项目名称与说明未指明具体能力点，需求按推断的能力分布综合计算；"
            "在项目表中填写 competencies（能力点）或 description（培训内容）可使选人更精准。"
        )

    teachers = ctx.teachers.reset_index(drop=True)
    rules = eligibility(teachers, project, ctx.records, policy, asof, repeat_years)
    ok = rules["eligible"].to_numpy()
    pool = teachers[ok].reset_index(drop=True)
    ids = pd.Index(pool["teacher_id"].astype(str))
    need, prior_share = need_scores(ids, ctx.competencies, content, codes, ctx.target_level)
    rural = (
        (pool["school_type"] == "rural").fillna(False).to_numpy(dtype=bool) if "school_type" in pool else 0
    )
    recent = pd.to_numeric(pool.get("hours_3y", pd.Series(0.0, index=pool.index)), errors="coerce").fillna(
        0.0
    )
    ranked = pool[["teacher_id"]].assign(
        county=pool["county"].astype(str) if "county" in pool else "",
        need=need,
        rural_bonus=np.where(rural, weight, 0.0),
        prior_share=prior_share,
    )
    ranked["score"] = ranked["need"] + ranked["rural_bonus"]
    order = np.lexsort((ranked["teacher_id"].to_numpy(), recent.to_numpy(), -ranked["score"].to_numpy()))
    ranked = ranked.iloc[order].reset_index(drop=True)
    ranked["rank"] = np.arange(1, len(ranked) + 1)
    ranked["selected"] = fill_quota(ranked, seats, allocated or None)
    # share of the eligible whose need is strictly lower, floored: the neediest of 619 is "above 99 %"
    below = (ranked["need"].rank(method="min").to_numpy() - 1) / max(len(ranked), 1)
    percentile = np.floor(100.0 * below)
    if seats is None and not allocated:
        notes.append("项目未规定名额：全部符合条件的教师均列入名单。")

    chosen = ranked[ranked["selected"]].reset_index(drop=True)
    detail = ["school_id", "school_type", "stage", "subject", "title", "years_teaching"]
    info = teachers.set_index("teacher_id")[[c for c in detail if c in teachers]]
    roster = chosen.join(info, on="teacher_id")
    chosen_ids = pd.Index(roster["teacher_id"].astype(str))
    gaps = _gap_matrix(chosen_ids, ctx.competencies, codes)
    roster["reason"] = _reasons(
        roster,
        gaps,
        content,
        codes,
        names,
        percentile[ranked["selected"].to_numpy()],
        weight,
        allocated or None,
    )
    groups = pd.factorize(roster["county"])[0] if mix_counties and len(roster) else None
    label = form_classes(gaps, project.class_size, groups, seed)
    # classes numbered from the neediest, so 第 1 班 is the one the project matters most to
    n_classes = int(label.max(initial=-1)) + 1
    class_need = np.bincount(label, roster["need"].to_numpy(), minlength=n_classes) / np.maximum(
        np.bincount(label, minlength=n_classes), 1
    )
    renumber = np.empty(len(class_need), dtype=np.int64)
    renumber[np.argsort(-class_need, kind="stable")] = np.arange(1, len(class_need) + 1)
    roster["class_no"] = renumber[label] if len(label) else np.empty(0, np.int64)
    figures = ["need", "rural_bonus", "score", "prior_share", "class_no", "reason"]
    roster = roster[["rank", "teacher_id", "county", *info.columns, *figures]]

    cost = Cost(
        days=project.days,
        online_hours=project.online_hours,
        offline_yuan_per_trainee=project.days * policy.offline_yuan_per_day,
        online_yuan_per_trainee=project.online_hours * policy.online_yuan_per_hour,
        trainees=len(roster),
    )
    member_comp = ctx.competencies[ctx.competencies["teacher_id"].isin(chosen_ids)]
    # the full portrait rows, so each class's portrait has its members' common gaps and hours
    members = teachers.set_index("teacher_id").loc[chosen_ids].reset_index()
    members["class_no"] = roster["class_no"].to_numpy()
    portrait = cohort_portrait(members, member_comp, "class_no", taxonomy=art.taxonomy)
    excluded = rules[~ok].reset_index(drop=True)
    excluded = excluded.join(teachers.set_index("teacher_id")[["county", "school_id"]], on="teacher_id")
    allocation_table = pd.DataFrame(columns=["county", "allocated", "eligible", "selected", "unfilled"])
    if allocated:
        allocation_table = pd.DataFrame({"county": list(allocated), "allocated": list(allocated.values())})
        allocation_table["eligible"] = (
            allocation_table["county"].map(ranked["county"].value_counts()).fillna(0)
        )
        allocation_table["selected"] = (
            allocation_table["county"].map(roster["county"].value_counts()).fillna(0)
        )
        allocation_table = allocation_table.astype({"eligible": int, "selected": int})
        allocation_table["unfilled"] = allocation_table["allocated"] - allocation_table["selected"]
        short = allocation_table[allocation_table["unfilled"] > 0]
        if len(short):
            notes.append(
                "以下县区符合条件的教师少于分配名额，名额未满："
                + "、".join(short["county"] + "（缺 " + short["unfilled"].astype(str) + " 人）")
            )
        if seats is not None and sum(allocated.values()) < seats:
            notes.append(
                f"各县名额合计 {sum(allocated.values())} 人，少于项目名额 {seats} 人，其余名额未分配。"
            )
    elif seats is not None and len(roster) < seats:
        notes.append(f"符合条件的教师（{len(ranked)} 人）少于项目名额（{seats} 人），名额未满。")
    return Selection(
        project=project,
        content=content,
        content_names=tuple(names.get(c, c) for c in content.codes),
        asof=asof,
        policy_name=policy.name,
        rural_priority_weight=weight,
        mix_counties=mix_counties,
        model_version=ctx.version,
        n_considered=len(teachers),
        roster=roster.reset_index(drop=True),
        ranked=ranked,
        excluded=excluded,
        classes=_class_table(roster, portrait, names, cost),
        class_portrait=portrait,
        allocations=allocation_table,
        cost=cost,
        spread=spread(gaps, label),
        random_spread=random_spread(gaps, label, seed) if len(label) else float("nan"),
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------------------------------------
# the workbook


ROSTER_HEADER: Final = (
    "序号", "教师编号", "县区", "学校", "城乡类型", "学段", "学科", "职称", "教龄", "需求得分", "乡村优先加分",
    "综合得分", "班级", "入选理由",
)  # fmt: skip
CLASS_HEADER: Final = (
    "班级", "人数", "本地区人数", "县区数", "县区", "乡村教师比例（%）", "平均需求得分", "共同差距", "经费（元）",
)  # fmt: skip


def _round(x: object, digits: int = 2) -> float | None:
    return None if _missing(x) else round(float(x), digits)  # type: ignore[arg-type]


def roster_rows(selection: Selection) -> list[tuple[Any, ...]]:
    """The roster as the page and the workbook show it (Chinese labels, rounded figures)."""
    r = selection.roster
    label = {"stage": STAGE, "school_type": SCHOOL_TYPE, "title": TITLE}

    def col(name: str) -> list[Any]:
        if name not in r:
            return [None] * len(r)
        if name in label:
            return [zh_label(label[name], v) for v in r[name]]
        return [None if _missing(v) else v for v in r[name]]

    years = [None if _missing(v) else int(v) for v in col("years_teaching")]
    return list(
        zip(
            r["rank"].astype(int).tolist(),
            r["teacher_id"].astype(str).tolist(),
            col("county"),
            col("school_id"),
            col("school_type"),
            col("stage"),
            col("subject"),
            col("title"),
            years,
            [_round(v) for v in r["need"]],
            [_round(v) for v in r["rural_bonus"]],
            [_round(v) for v in r["score"]],
            (r["class_no"].astype(int).map(lambda c: f"第 {c} 班")).tolist(),
            r["reason"].astype(str).tolist(),
            strict=True,
        )
    )


def class_rows(selection: Selection) -> list[tuple[Any, ...]]:
    c = selection.classes
    mine = c["n_mine"] if "n_mine" in c else c["n_teachers"]
    return [
        (
            label,
            int(n),
            int(m),
            None if _missing(nc) else int(nc),
            counties or None,
            None if _missing(rural) else round(100 * float(rural), 1),
            _round(need),
            gaps or None,
            _round(cost, 0),
        )
        for label, n, m, nc, counties, rural, need, gaps, cost in zip(
            c["class_label"],
            c["n_teachers"],
            mine,
            c["n_counties"],
            c["counties"],
            c["share_rural"],
            c["mean_need"],
            c["common_gaps"],
            c["cost_yuan"],
            strict=True,
        )  # fmt: skip
    ]


def overview_rows(selection: Selection) -> list[tuple[str, Any]]:
    p, cost = selection.project, selection.cost
    content = "、".join(
        f"{name}（{100 * share:.0f}%）"
        for name, share in zip(selection.content_names, selection.content.shares, strict=True)
    )
    return [
        ("项目编号", p.project_id),
        ("项目名称", p.name),
        ("培训形式", zh_label(FORMAT, p.format) if p.format else "未登记"),
        ("集中培训天数", p.days),
        ("网络研修学时", p.online_hours),
        ("项目名额", p.quota),
        ("班额", p.class_size),
        ("项目范围", p.scope_text),
        ("内容能力点", content),
        ("能力点来源", CONTENT_SOURCE_ZH[selection.content.source]),
        ("测算日期", selection.asof.strftime("%Y-%m-%d")),
        ("政策", selection.policy_name),
        ("乡村优先权重", selection.rural_priority_weight),
        ("编班方式", "各班混合不同县区" if selection.mix_counties else "需求相近者同班"),
        ("范围内教师", selection.n_considered),
        ("符合条件", selection.n_eligible),
        ("入选人数", len(selection.roster)),
        ("班级数", len(selection.classes)),
        ("班内需求离散度（分）", _round(selection.spread, 1)),
        ("随机分班离散度（分）", _round(selection.random_spread, 1)),
        ("人均经费（元）", cost.per_trainee_yuan),
        ("经费合计（元）", cost.total_yuan),
        ("模型版本", selection.model_version),
        ("说明", "；".join(selection.notes) or None),
    ]


def portrait_rows(selection: Selection, names: Mapping[str, str]) -> list[tuple[Any, ...]]:
    """Class × competency figures of the classes that may be shown."""
    c = selection.class_portrait.competencies.sort_values(["class_no", "competency"])
    return [
        (f"第 {int(no)} 班", code, names.get(code, code), int(n), _round(mean, 1), _round(p25, 1),
         _round(p50, 1), _round(p75, 1), None if _missing(below) else round(100 * float(below), 1))
        for no, code, n, mean, p25, p50, p75, below in zip(
            c["class_no"], c["competency"], c["n"], c["mean"], c["p25"], c["p50"], c["p75"], c["share_below"],
            strict=True,
        )
    ]  # fmt: skip


def selection_workbook(selection: Selection, names: Mapping[str, str]) -> bytes:
    """The selection as an XLSX workbook: 概览, 名单, 分班, 班级画像, 不符合条件统计 and, with allocations,
    各县名额 — the same rows the trainer page shows."""
    wb = Workbook(write_only=True)
    append_sheet(wb, "概览", ("项目", "值"), overview_rows(selection))
    append_sheet(wb, "名单", ROSTER_HEADER, roster_rows(selection))
    append_sheet(wb, "分班", CLASS_HEADER, class_rows(selection))
    append_sheet(
        wb,
        "班级画像",
        ("班级", "能力点编码", "能力点", "人数", "平均", "P25", "中位数", "P75", "低于 60 分比例（%）"),
        portrait_rows(selection, names),
    )
    counts = selection.exclusion_counts()
    append_sheet(
        wb,
        "不符合条件统计",
        ("规则", "人数"),
        zip(counts["label"], counts["n_teachers"].astype(int), strict=True),
    )
    if len(selection.allocations):
        a = selection.allocations
        append_sheet(
            wb,
            "各县名额",
            ("县区", "分配名额", "符合条件", "入选", "缺额"),
            a[["county", "allocated", "eligible", "selected", "unfilled"]].itertuples(index=False, name=None),
        )
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def taxonomy_names(art: Artifacts) -> dict[str, str]:
    return dict(zip(art.taxonomy["code"].astype(str), art.taxonomy["name"].astype(str), strict=False))


def run_selection(
    ws: Workspace,
    project_id: str,
    out: Path | None = None,
    mix_counties: bool = False,
    allocations: Mapping[str, int] | None = None,
    quota: int | None = None,
) -> Selection:
    """`tdr select PROJECT_ID --workspace WS [--out FILE.xlsx]`: select, form classes, and write the
    workbook to ``out`` (atomically) when given."""
    if out is not None and Path(out).suffix.lower() != ".xlsx":
        raise SelectionError(f"导出文件应为 .xlsx：{out}")
    ctx = SelectionContext.load(ws)
    selection = select_trainees(
        ctx, project_id, mix_counties=mix_counties, allocations=allocations, quota=quota
    )
    if out is not None:
        data = selection_workbook(selection, taxonomy_names(ctx.art))
        atomic_write(Path(out), lambda p: p.write_bytes(data))
    return selection


def summary_text(selection: Selection, top: int = 10) -> str:
    """What `tdr select` prints: the project, counts, exclusions, classes, cost, notes and the first ``top``
    trainees with their reasons (ids only: no names ever reach a terminal or a log)."""
    p, cost = selection.project, selection.cost
    content = "、".join(
        f"{name}（{100 * share:.0f}%）"
        for name, share in zip(selection.content_names, selection.content.shares, strict=True)
    )
    lines = [
        f"{p.project_id} {p.name}（{p.scope_text}；名额 {p.quota if p.quota is not None else '未规定'}，"
        f"班额 {p.class_size}）",
        f"内容能力点：{content}（{CONTENT_SOURCE_ZH[selection.content.source]}）",
        f"教师 {selection.n_considered} 人，符合条件 {selection.n_eligible} 人，入选 {len(selection.roster)} 人，"
        f"编为 {len(selection.classes)} 个班（{'各班混合不同县区' if selection.mix_counties else '需求相近者同班'}）",
    ]
    counts = selection.exclusion_counts()
    failing = counts[counts["n_teachers"] > 0]
    if len(failing):
        lines.append(
            "不符合条件：" + "；".join(failing["label"] + " " + failing["n_teachers"].astype(str) + " 人")
        )
    if len(selection.classes):
        lines.append(
            f"班内需求离散度 {selection.spread:.1f} 分（随机分班 {selection.random_spread:.1f} 分）；各班人数："
            + "、".join(selection.classes["n_teachers"].astype(str))
        )
    lines.append(
        f"经费：人均 {cost.per_trainee_yuan:,.0f} 元（集中培训 {cost.days:g} 天、网络研修 {cost.online_hours:g} 学时），"
        f"合计 {cost.total_yuan:,.0f} 元"
    )
    lines.extend(f"说明：{note}" for note in selection.notes)
    for rank, teacher_id, county, *_, class_label, reason in roster_rows(selection)[:top]:
        lines.append(f"{rank:>4} {teacher_id} {county or ''} {class_label}：{reason}")
    if len(selection.roster) > top:
        lines.append(f"……共 {len(selection.roster)} 人，完整名单见导出的 Excel。")
    return "\n".join(lines)


def read_allocations(path: Path) -> dict[str, int]:
    """Per-county allocations from a CSV or XLSX file with columns county / 县区 and quota / 名额."""
    frame = (
        pd.read_excel(path, dtype=str)
        if Path(path).suffix.lower() in (".xlsx", ".xls")
        else pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    )
    columns = {c: c.strip() for c in frame.columns}
    frame = frame.rename(columns=columns).rename(columns={"县区": "county", "县": "county", "名额": "quota"})
    if not {"county", "quota"} <= set(frame.columns):
        raise SelectionError(
            f"名额文件 {path} 应有 county（县区）与 quota（名额）两列，实际为 {list(frame.columns)}"
        )
    return parse_county_quotas(dict(zip(frame["county"], frame["quota"], strict=True)))
