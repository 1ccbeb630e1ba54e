"""The selection as people read it: the rows of the page and the workbook, the XLSX workbook, the text
`tdr select` prints, and the per-county allocations file a clerk supplies."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import pandas as pd
from openpyxl import Workbook

from data.schema import SCHOOL_TYPE, STAGE, TITLE
from data.workspace import Workspace, atomic_write
from recommender.config import Settings
from recommender.selection.content import CONTENT_SOURCE_ZH
from recommender.selection.project import SelectionError, _missing, parse_county_quotas, zh_label
from recommender.selection.select import Selection, SelectionContext, class_label, select_trainees
from recommender.workbook import append_sheet

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
            r["class_no"].astype(int).map(class_label).tolist(),
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
        ("培训形式", p.format_label),
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


def portrait_rows(selection: Selection) -> list[tuple[Any, ...]]:
    """Class × competency figures of the classes that may be shown."""
    names = selection.competency_names
    c = selection.class_portrait.competencies.sort_values(["class_no", "competency"])
    return [
        (class_label(int(no)), code, names.get(code, code), int(n), _round(mean, 1), _round(p25, 1),
         _round(p50, 1), _round(p75, 1), None if _missing(below) else round(100 * float(below), 1))
        for no, code, n, mean, p25, p50, p75, below in zip(
            c["class_no"], c["competency"], c["n"], c["mean"], c["p25"], c["p50"], c["p75"], c["share_below"],
            strict=True,
        )
    ]  # fmt: skip


def selection_workbook(selection: Selection) -> bytes:
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
        portrait_rows(selection),
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


def run_selection(
    ws: Workspace,
    project_id: str,
    config: Settings,
    out: Path | None = None,
    mix_counties: bool = False,
    allocations: Mapping[str, int] | None = None,
    quota: int | None = None,
) -> Selection:
    """`tdr select PROJECT_ID --workspace WS [--out FILE.xlsx]`: select, form classes, and write the
    workbook to ``out`` (atomically) when given."""
    if out is not None and Path(out).suffix.lower() != ".xlsx":
        raise SelectionError(f"导出文件应为 .xlsx：{out}")
    ctx = SelectionContext.load(ws, config)
    selection = select_trainees(
        ctx, project_id, mix_counties=mix_counties, allocations=allocations, quota=quota
    )
    if out is not None:
        data = selection_workbook(selection)
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
    for rank, teacher_id, county, *_, label, reason in roster_rows(selection)[:top]:
        lines.append(f"{rank:>4} {teacher_id} {county or ''} {label}：{reason}")
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
