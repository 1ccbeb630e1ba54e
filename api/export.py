"""XLSX export of a cohort portrait (群体画像) for trainers who continue their work in Excel.

Text is always written as text: a school name beginning with '=' must not become a formula in a clerk's Excel.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO
from urllib.parse import quote

from fastapi.responses import StreamingResponse
from openpyxl import Workbook

from api.schemas import Cohort
from recommender.workbook import append_sheet

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_LEVEL_ZH = {"province": "省", "city": "市", "county": "县区", "school": "学校"}
_SPILL_BYTES = 8 << 20


def _share(x: float | None) -> float | None:
    return None if x is None else round(100 * x, 1)


def cohort_workbook(cohort: Cohort) -> IO[bytes]:
    """The cohort as a workbook in a temporary file (in memory while small), positioned at its start."""
    wb = Workbook(write_only=True)
    hours = cohort.hours
    append_sheet(
        wb,
        "概览",
        ["项目", "值"],
        [
            ("分组方式", cohort.by),
            ("分组取值", cohort.value),
            ("查看范围", cohort.scope or "全部"),
            ("教师人数", cohort.n_teachers),
            ("平均应修学时", hours.required_mean if hours else None),
            ("平均已修学时", hours.done_mean if hours else None),
            ("平均尚欠学时", hours.owed_mean if hours else None),
            ("学时落后比例（%）", _share(hours.share_behind) if hours else None),
            ("结业率（%）", _share(cohort.completion_rate)),
            ("未参训率（%）", _share(cohort.no_show_rate)),
            ("导出时间", datetime.now().strftime("%Y-%m-%d %H:%M")),
        ],
    )
    append_sheet(
        wb,
        "能力点分布",
        ["能力点编码", "能力点", "维度", "平均", "P10", "P25", "中位数", "P75", "P90", "低于目标比例（%）"],
        (
            (
                c.competency,
                c.name,
                c.domain,
                c.mean,
                c.p10,
                c.p25,
                c.p50,
                c.p75,
                c.p90,
                _share(c.share_below_target),
            )
            for c in cohort.competencies
        ),
    )
    if cohort.heatmap is not None:
        hm = cohort.heatmap
        names = {c.competency: c.name or c.competency for c in cohort.competencies}
        append_sheet(
            wb,
            "热力图",
            [
                _LEVEL_ZH.get(hm.row_level, hm.row_level),
                "人数",
                *(names.get(code, code) for code in hm.columns),
            ],
            (
                (row, size, *values)
                for row, size, values in zip(hm.rows, hm.row_sizes, hm.values, strict=True)
            ),
        )
    append_sheet(
        wb,
        "常见差距",
        ["能力点编码", "能力点", "教师比例（%）"],
        ((g.competency, g.name, _share(g.share)) for g in cohort.common_gaps),
    )
    append_sheet(
        wb,
        "学时落后教师",
        ["教师编号", "学校", "县区", "应修学时", "已修学时", "尚欠学时", "未完成必修专题"],
        (
            (
                t.teacher_id,
                t.school_id,
                t.county,
                t.hours_required,
                t.hours_done,
                t.hours_owed,
                "、".join(t.missing_mandatory),
            )
            for t in cohort.behind_on_hours
        ),
    )
    return spooled(wb)


def spooled(wb: Workbook) -> IO[bytes]:
    """The workbook saved into a temporary file (in memory while small), positioned at its start; handed to the
    caller, who streams and closes it (`xlsx_response`)."""
    out = tempfile.SpooledTemporaryFile(max_size=_SPILL_BYTES)  # noqa: SIM115
    wb.save(out)
    out.seek(0)
    return out


def xlsx_response(workbook: IO[bytes], ascii_name: str, filename: str) -> StreamingResponse:
    """The workbook streamed as an attachment (`filename` may be Chinese; `ascii_name` for old clients)."""

    def chunks() -> Iterator[bytes]:
        with workbook:
            while block := workbook.read(1 << 16):
                yield block

    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
    return StreamingResponse(
        chunks(), media_type=XLSX_MEDIA_TYPE, headers={"Content-Disposition": disposition}
    )
