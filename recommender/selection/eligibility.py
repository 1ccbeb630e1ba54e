"""Who may join a project: its target group (scope, stage, subject, school type, role, title, years) and
the policy's bars (the three-year bar after a no-show, no repeat of the same content), each failure with the
sentence a clerk reads."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd

from data.policy import Policy
from data.schema import ROLE, SCHOOL_TYPE, STAGE, TITLE, EnumSpec
from features.history import positions
from recommender.selection.project import UNREGISTERED, Project, _labels, _missing, _text, zh_label

# How far back a completed run of the same project counts as "trained on this content" (杜绝无效的重复培训).
REPEAT_YEARS: Final = 3
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
BAR_STATUS_ZH: Final = {"no_show": "未参训", "dropped": "中途退出（被劝退或退训）", "unfinished": "未结业"}


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


def bar_guards(project: Project, policy: Policy) -> bool:
    """Whether the three-year bar guards ``project``: a face-to-face format (``policy.bar_formats``: 集中培训,
    a 工作坊 included), or days of it when the format is not given."""
    return project.format in policy.bar_formats if project.format else project.days > 0


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
    if bar_guards(project, policy):
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
