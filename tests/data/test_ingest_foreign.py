"""A foreign export: another vendor's generator, its own habits, and bad rows of every kind.

The generator below writes what a different training platform would: teachers as GBK CSV with Chinese headers
and values, the course catalogue as XLSX behind an instructions sheet, records as UTF-8-with-BOM CSV, responses
as Parquet, scores as GB18030, its own competency framework, and bad rows of each kind the contract names.
Ingestion must accept exactly the good rows and reject exactly the bad ones, each with a reason.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from data.ingest import IngestReport, ingest
from data.workspace import Workspace

STAGES_ZH = {"幼儿园": "kindergarten", "小学": "primary", "初中": "junior", "高中": "senior"}
SUBJECTS_ZH = {
    "幼儿园": ["学前教育"],
    "小学": ["语文", "数学", "英语"],
    "初中": ["物理", "数学"],
    "高中": ["化学", "历史"],
}
TITLES_ZH = ["未定级", "二级", "一级", "高级"]
TYPES_ZH = ["乡村", "镇区", "城区"]
STATUS_ZH = ["结业", "结业", "结业", "退出", "未参训", "在训"]
DATE_SPELLINGS = ["{y}/{m}/{d}", "{y}年{m}月{d}日", "{y}{m:02d}{d:02d}", "{y}-{m:02d}-{d:02d}", "{y}.{m}.{d}"]


@dataclass
class Table:
    """One table of the export: its good rows, then its bad rows with the reason each must be rejected for."""

    header: list[str]
    good: list[list[object]] = field(default_factory=list)
    bad: list[tuple[list[object], str, str]] = field(default_factory=list)  # row, column, reason

    def rows(self) -> list[list[object]]:
        return self.good + [row for row, _, _ in self.bad]


def foreign_export(seed: int = 5) -> dict[str, Table]:
    """The vendor's tables: a few dozen seeded good rows and, per table, one bad row of each kind."""
    rng = random.Random(seed)
    taxonomy = Table(
        ["编码", "名称", "领域", "描述"],
        [
            ["M1", "教学设计", "教学", "依据课标设计教学"],
            ["M2", "作业设计", "教学", "设计分层作业"],
            ["M3", "家校沟通", "育人", "与家长有效沟通"],
            ["M4", "信息化教学", "技术", "用技术支持教学"],
        ],
        [(["", "无编码能力", "教学", ""], "code", "必填字段「编码」为空")],
    )

    teachers = Table(["教师编号", "学段", "任教学科", "县区", "城乡类型", "职称", "教龄", "岗位", "姓名"])
    for i in range(1, 13):
        stage = rng.choice(list(STAGES_ZH))
        roles = rng.choice(["", "", "班主任", "校长、教研员", "党组织书记；培训者"])
        teachers.good.append(
            [
                f"F{i:03d}",
                stage,
                rng.choice(SUBJECTS_ZH[stage]),
                rng.choice(["南昌县", "进贤县", "安义县"]),
                rng.choice(TYPES_ZH),
                rng.choice(TITLES_ZH),
                str(rng.randint(0, 30)),
                roles,
                "某老师",
            ]
        )
    teachers.bad = [
        (["F013", "大学", "物理", "南昌县", "城区", "一级", "8", "", "甲"], "stage", "「学段」的值「大学」不在允许值 幼儿园/小学/初中/高中 中"),
        (["F014", "小学", "", "南昌县", "城区", "一级", "8", "", "乙"], "subject", "必填字段「任教学科」为空"),
        (["F015", "小学", "数学", "南昌县", "城区", "一级", "-3", "", "丙"], "years_teaching", "「教龄」的值「-3」超出允许范围（应 ≥ 0）"),
        (["F016", "初中", "数学", "南昌县", "城区", "教授", "8", "", "丁"], "title", "「职称」的值「教授」不在允许值 未定级/三级/二级/一级/高级/正高级 中"),
        (["F017", "初中", "数学", "南昌县", "城区", "一级", "8", "班主任、副校长", "戊"], "roles", "「岗位」中的值「副校长」不在允许值"),
        (["F001", "小学", "语文", "南昌县", "乡村", "一级", "12", "", "己"], "teacher_id", "与第 2 行的教师编号重复，保留首行"),
        (["F018", "小学", "数学"], "", "字段数与表头不符（表头 9 列，该行 3 列）"),
    ]  # fmt: skip

    courses = Table(
        [
            "课程编号",
            "课程名称",
            "课程简介",
            "学时",
            "形式",
            "能力点",
            "适用学段",
            "层级",
            "实践性",
            "必修专题",
        ]
    )
    courses.good = [
        ["K01", "教学设计入门", "从课标到课时目标", 10, "线上", "M1", "", "入门", "是", ""],
        ["K02", "作业设计与分层", "双减背景下的作业", 8.5, "混合", "M2；M1", "小学、初中", "进阶", "否", ""],
        ["K03", "家校沟通艺术", "家长会与家访", 6, "工作坊", "", "", 3, "是", ""],
        ["K04", "信息化教学实践", "技术支持的课堂", 12, "线下集中", "信息化教学", "高中", 2, "", ""],
        ["K05", "师德专题", "十项准则解读", 4, "线上", "", "", 1, "否", "师德师风"],
        ["K06", "校本研修实务", "教研组研修", 16, "校本", "M1、M3", "", 2, "是", ""],
    ]
    courses.bad = [
        (["K07", "坏学时", "", -4, "线上", "M1", "", 1, "", ""], "hours", "「学时」的值「-4」超出允许范围（应 > 0）"),
        (["K08", "零学时", "", 0, "线上", "M1", "", 1, "", ""], "hours", "「学时」的值「0」超出允许范围（应 > 0）"),
        (["K09", "未知能力", "", 4, "线上", "M9", "", 1, "", ""], "competencies", "「能力点」中的代码「M9」不在能力框架中"),
        (["K10", "函授课", "", 4, "函授", "M1", "", 1, "", ""], "format", "「形式」的值「函授」不在允许值"),
        (["K11", "超纲层级", "", 4, "线上", "M1", "", 4, "", ""], "level", "「层级」的值「4」超出允许范围（应在 1–3 之间）"),
        (["K12", "实践存疑", "", 4, "线上", "M1", "", 1, "也许", ""], "practical", "「实践性」的值「也许」应为 是 或 否"),
        (["K01", "重复课程", "", 4, "线上", "M1", "", 1, "", ""], "course_id", "与第 3 行的课程编号重复，保留首行"),
    ]  # fmt: skip

    good_teachers = [row[0] for row in teachers.good]
    good_courses = [row[0] for row in courses.good]
    records = Table(
        [
            "记录编号",
            "教师编号",
            "课程编号",
            "项目名称",
            "开始日期",
            "结束日期",
            "学时",
            "状态",
            "成绩",
            "满意度",
        ]
    )
    for i in range(1, 25):
        status = rng.choice(STATUS_ZH)
        y, m, d = rng.choice([2022, 2023, 2024]), rng.randint(1, 12), rng.randint(1, 20)
        on_course = rng.random() < 0.8
        records.good.append(
            [
                f"H{i:04d}",
                rng.choice(good_teachers),
                rng.choice(good_courses) if on_course else "",
                "" if on_course else "国培计划乡村教师研修",
                rng.choice(DATE_SPELLINGS).format(y=y, m=m, d=d),
                f"{y}-{m:02d}-{d + 5:02d}" if status == "结业" else "",
                "0" if status == "未参训" else str(rng.choice([4, 8, 12.5])),
                status,
                str(rng.randint(60, 100)) if status == "结业" else "",
                str(rng.randint(1, 5)) if status == "结业" else "",
            ]
        )
    records.bad = [
        (["H0901", "F999", "K01", "", "2024-01-05", "", "6", "结业", "", ""], "teacher_id", "教师编号 F999 在教师表中不存在，请核对编号，或先在教师表中补录"),
        (["H0902", "F013", "K01", "", "2024-01-05", "", "6", "结业", "", ""], "teacher_id", "教师编号 F013 在教师表中的行未通过校验（见 rejects/teachers.csv），请先更正该行"),
        (["H0903", "F001", "K404", "", "2024-01-05", "", "6", "结业", "", ""], "course_id", "课程编号 K404 在课程表中不存在"),
        (["H0904", "F001", "K01", "", "2024-13-40", "", "6", "结业", "", ""], "start_date", "「开始日期」的值「2024-13-40」不是有效日期"),
        (["H0905", "F001", "K01", "", "", "", "6", "结业", "", ""], "start_date", "必填字段「开始日期」为空"),
        (["H0906", "F001", "K01", "", "2024-03-05", "2024-03-01", "6", "结业", "", ""], "end_date", "「结束日期」早于「开始日期」"),
        (["H0907", "F001", "K01", "", "2024-01-05", "", "-1", "结业", "", ""], "hours", "「学时」的值「-1」超出允许范围（应 ≥ 0）"),
        (["H0908", "F001", "K01", "", "2024-01-05", "", "6", "结业", "130", ""], "score", "「成绩」的值「130」超出允许范围（应在 0–100 之间）"),
        (["H0909", "F001", "K01", "", "2024-01-05", "", "6", "结业", "", "6"], "satisfaction", "「满意度」的值「6」超出允许范围（应在 1–5 之间）"),
        (["H0910", "F001", "K01", "", "2024-01-05", "", "6", "毕业", "", ""], "status", "「状态」的值「毕业」不在允许值 在训/结业/退出/未参训 中"),
        (["H0001", "F002", "K02", "", "2024-01-05", "", "6", "结业", "", ""], "record_id", "与第 2 行的记录编号重复，保留首行"),
    ]  # fmt: skip

    items = Table(
        ["题目编号", "能力点", "满分"],
        [["Q1", "M1", "1"], ["Q2", "M2;M3", "2"], ["Q3", "M4", "1"], ["Q4", "作业设计", ""]],
        [
            (["Q5", "M7", "1"], "competencies", "「能力点」中的代码「M7」不在能力框架中"),
            (["Q6", " ; ", "1"], "competencies", "必填字段「能力点」为空"),
        ],
    )

    maxima = {"Q1": 1, "Q2": 2, "Q3": 1, "Q4": 1}
    responses = Table(["teacher_id", "item_id", "score", "taken_at"])
    when = dt.datetime(2024, 5, 1, 9, 30)
    for teacher in good_teachers[:8]:
        for item, top in maxima.items():
            responses.good.append([teacher, item, float(rng.randint(0, top)), when])
    responses.bad = [
        (["F404", "Q1", 1.0, when], "teacher_id", "教师编号 F404 在教师表中不存在"),
        (["F001", "Q5", 1.0, when], "item_id", "题目编号 Q5 在题目表中的行未通过校验（见 rejects/items.csv）"),
        (["F002", "Q1", 2.0, dt.datetime(2024, 6, 1)], "score", "「得分」的值「2」超过该题满分 1"),
        (["F003", "Q2", -1.0, dt.datetime(2024, 6, 1)], "score", "「得分」的值「-1」超出允许范围（应 ≥ 0）"),
        (["F004", "Q3", None, dt.datetime(2024, 6, 1)], "score", "必填字段「得分」为空"),
        ([good_teachers[0], "Q1", 0.0, when], "teacher_id；item_id；taken_at", "与第 2 行的教师编号+题目编号+作答时间重复"),
    ]  # fmt: skip

    scores = Table(["教师编号", "能力代码", "得分", "测评时间", "来源"])
    for teacher in good_teachers:
        for code in ("M1", "M3"):
            scores.good.append(
                [
                    teacher,
                    code,
                    f"{rng.uniform(40, 95):.1f}",
                    "2024-04-01",
                    rng.choice(["自评", "测评", "课堂观察"]),
                ]
            )
    scores.bad = [
        (["F001", "M1", "120", "2024-04-02", "测评"], "score", "「得分」的值「120」超出允许范围（应在 0–100 之间）"),
        (["F001", "M1", "70", "2024-04-02", "他评"], "source", "「来源」的值「他评」不在允许值 测评/自评/观察 中"),
        (["F001", "Z1", "70", "2024-04-02", "自评"], "competency", "「能力代码」中的代码「Z1」不在能力框架中"),
        (["F404", "M1", "70", "2024-04-02", "自评"], "teacher_id", "教师编号 F404 在教师表中不存在"),
    ]  # fmt: skip

    projects = Table(
        ["项目编号", "项目名称", "目标学段", "目标岗位", "最低职称", "最低教龄", "覆盖县区", "形式", "天数", "名额", "班额"],
        [
            ["P01", "乡村骨干教师研修", "小学、初中", "", "一级", "5", "南昌县；进贤县", "混合", "7", "100", ""],
            ["P02", "班主任能力提升", "", "班主任", "", "", "", "线下集中", "3", "50", "25"],
        ],
        [
            (["P03", "教授研修", "高中", "", "教授", "", "", "线上", "2", "30", ""], "min_title", "「最低职称」的值「教授」不在允许值"),
            (["P04", "负名额", "高中", "", "", "", "", "线上", "2", "-5", ""], "quota", "「名额」的值「-5」超出允许范围（应 ≥ 0）"),
        ],
    )  # fmt: skip
    return {
        "taxonomy": taxonomy,
        "teachers": teachers,
        "courses": courses,
        "training_records": records,
        "items": items,
        "responses": responses,
        "competency_scores": scores,
        "projects": projects,
    }


def _csv(table: Table) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in [table.header, *table.rows()]) + "\n"


def write_export(tables: dict[str, Table], src: Path) -> dict[str, str]:
    """Write the tables the vendor's way; returns the file name of each table."""
    src.mkdir(parents=True)
    files = {
        "taxonomy": "能力框架.csv",
        "teachers": "教师信息.csv",
        "courses": "课程目录.xlsx",
        "training_records": "培训记录_2022-2024.csv",
        "items": "题库.csv",
        "responses": "作答记录.parquet",
        "competency_scores": "能力测评结果.csv",
        "projects": "培训项目.xlsx",
    }
    (src / files["taxonomy"]).write_text(_csv(tables["taxonomy"]), encoding="utf-8")
    (src / files["teachers"]).write_bytes(_csv(tables["teachers"]).encode("gbk"))
    (src / files["training_records"]).write_text(_csv(tables["training_records"]), encoding="utf-8-sig")
    (src / files["items"]).write_text(_csv(tables["items"]), encoding="utf-8")
    (src / files["competency_scores"]).write_bytes(_csv(tables["competency_scores"]).encode("gb18030"))
    responses = tables["responses"]
    pd.DataFrame(responses.rows(), columns=responses.header).to_parquet(src / files["responses"], index=False)

    book = openpyxl.Workbook()
    book.active.title = "填表说明"
    book.active.append(["形式请填写：线上/线下集中/混合/工作坊/跟岗/校本"])
    sheet = book.create_sheet("课程")
    sheet.append(["2024年度课程目录"])  # a title row above the header
    for row in [tables["courses"].header, *tables["courses"].rows()]:
        sheet.append(row)
    book.save(src / files["courses"])
    book = openpyxl.Workbook()
    for row in [tables["projects"].header, *tables["projects"].rows()]:
        book.active.append(row)
    book.save(src / files["projects"])
    return files


def first_row_number(name: str) -> int:
    """Excel row number of a table's first data row in the vendor's files."""
    return 3 if name == "courses" else 2  # the course sheet has a title row above its header


@pytest.fixture(scope="module")
def export() -> dict[str, Table]:
    return foreign_export()


@pytest.fixture(scope="module")
def ingested(
    export: dict[str, Table], tmp_path_factory: pytest.TempPathFactory
) -> tuple[IngestReport, Workspace, dict[str, str]]:
    root = tmp_path_factory.mktemp("foreign")
    files = write_export(export, root / "src")
    return ingest(root / "src", root / "ws"), Workspace.open(root / "ws"), files


def read_rejects(ws: Workspace, table: str) -> pd.DataFrame:
    return pd.read_csv(
        ws.rejects_dir / f"{table}.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig"
    )


def test_every_table_accepts_exactly_its_good_rows_and_rejects_exactly_its_bad_ones(
    export: dict[str, Table], ingested: tuple[IngestReport, Workspace, dict[str, str]]
) -> None:
    report, ws, files = ingested
    assert {t.table: (t.accepted, t.rejected) for t in report.tables} == {
        name: (len(t.good), len(t.bad)) for name, t in export.items()
    }
    for name, table in export.items():
        counts = report.counts(name)
        assert counts.files == (files[name],)
        assert counts.rows_in == len(table.rows()) == counts.accepted + counts.rejected
        if name != "taxonomy":
            assert len(ws.read_table(name)) == len(table.good)
    assert report.taxonomy_source == files["taxonomy"] and report.skipped == ()


def test_every_reject_names_its_file_row_column_and_the_reason_of_its_kind(
    export: dict[str, Table], ingested: tuple[IngestReport, Workspace, dict[str, str]]
) -> None:
    _, ws, files = ingested
    for name, table in export.items():
        found = read_rejects(ws, name)
        first_bad = first_row_number(name) + len(table.good)
        expected_rows = [str(first_bad + i) for i in range(len(table.bad))]
        assert found["row_number"].tolist() == expected_rows, name
        assert set(found["source_file"]) == {files[name]}
        for (_, column, reason), (_, got) in zip(table.bad, found.iterrows(), strict=True):
            assert got["column"] == column, (name, got.to_dict())
            assert got["reason"].startswith(reason), (name, got["reason"], reason)


def test_good_rows_arrive_in_contract_form_under_the_deployments_taxonomy(
    export: dict[str, Table], ingested: tuple[IngestReport, Workspace, dict[str, str]]
) -> None:
    _, ws, _ = ingested
    assert ws.read_table("taxonomy")["code"].tolist() == ["M1", "M2", "M3", "M4"]
    teachers = ws.read_table("teachers")
    assert teachers["stage"].tolist() == [STAGES_ZH[row[1]] for row in export["teachers"].good]
    assert set(teachers["school_type"]) <= {"rural", "town", "urban"}
    assert set(teachers["title"]) <= {"none", "second", "first", "senior"}
    assert {tuple(r) for r in teachers["roles"]} <= {(), ("head_teacher",), ("principal", "researcher"), ("party_secretary", "trainer")}  # fmt: skip
    courses = ws.read_table("courses").set_index("course_id")
    assert [list(c) for c in courses["competencies"]] == [["M1"], ["M2", "M1"], [], ["M4"], [], ["M1", "M3"]]
    assert list(courses.loc["K02", "stages"]) == ["primary", "junior"] and courses.loc["K02", "level"] == 2
    assert courses.loc["K02", "hours"] == 8.5 and courses.loc["K02", "format"] == "blended"
    records = ws.read_table("training_records")
    assert set(records["status"]) <= {"completed", "dropped", "no_show", "enrolled"}
    assert records["start_date"].dt.year.between(2022, 2024).all()
    assert ws.read_table("items").set_index("item_id").loc["Q4", "max_score"] == 1.0
    assert set(ws.read_table("competency_scores")["source"]) <= {"self", "test", "observation"}
    projects = ws.read_table("projects").set_index("project_id")
    assert list(projects.loc["P01", "scope_counties"]) == ["南昌县", "进贤县"]
    assert projects["class_size"].tolist() == [50, 25]


def test_the_cli_ingests_the_export_exits_zero_and_writes_the_same_workspace_twice(
    export: dict[str, Table], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from tdr.cli import app

    write_export(export, tmp_path / "src")
    snapshots = []
    for _ in range(2):
        result = CliRunner().invoke(
            app, ["ingest", str(tmp_path / "src"), "--workspace", str(tmp_path / "ws")]
        )
        assert result.exit_code == 0, result.output
        folder = Workspace.open(tmp_path / "ws").version_dir
        assert folder is not None
        # the version's tables and rejects (its report and manifest name the version, which differs)
        snapshots.append(
            {
                p.relative_to(folder): p.read_bytes()
                for p in sorted(folder.rglob("*"))
                if p.is_file() and p.suffix != ".json"
            }
        )
    assert snapshots[0] == snapshots[1]
    saved = json.loads((tmp_path / "ws" / "ingest_report.json").read_text(encoding="utf-8"))
    assert {name: (t["accepted"], t["rejected"]) for name, t in saved["tables"].items()} == {
        name: (len(t.good), len(t.bad)) for name, t in export.items()
    }
