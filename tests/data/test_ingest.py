"""Ingestion: one test per rule, the quarantine, the workspace it writes and the `tdr ingest` command."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from data.ingest import IngestRefused, IngestReport, UnreadableFileError, ingest
from data.workspace import Workspace

TAXONOMY = pd.DataFrame(
    {
        "code": ["A1", "A2", "B1"],
        "name": ["师德规范", "学情分析", "课堂管理"],
        "domain": ["师德与理念", "信息技术应用", "班级管理与育人"],
        "description": ["践行师德", "分析学情", "管理课堂"],
    }
)

TEACHERS = pd.DataFrame(
    {
        "teacher_id": ["T1", "T2", "T3", "T4"],
        "stage": ["primary", "junior", "senior", "kindergarten"],
        "subject": ["语文", "数学", "英语", "学前教育"],
        "county": ["南昌县", "进贤县", "南昌县", "安义县"],
        "school_type": ["rural", "town", "urban", "rural"],
        "title": ["first", "second", "senior", "none"],
        "years_teaching": ["10", "3", "25", "0"],
        "roles": ["head_teacher", "", "principal;researcher", ""],
    }
)
COURSES = pd.DataFrame(
    {
        "course_id": ["C1", "C2", "C3"],
        "title": ["师德修养", "学情分析方法", "课堂管理实务"],
        "hours": ["10", "8", "12.5"],
        "format": ["online", "workshop", "offline"],
        "competencies": ["A1", "A2;B1", ""],
        "level": ["1", "2", "3"],
    }
)
ITEMS = pd.DataFrame(
    {"item_id": ["I1", "I2", "I3"], "competencies": ["A1", "A2", "A2;B1"], "max_score": ["1", "1", "3"]}
)
RECORDS = pd.DataFrame(
    {
        "record_id": ["R1", "R2", "R3"],
        "teacher_id": ["T1", "T2", "T3"],
        "course_id": ["C1", "", "C3"],
        "start_date": ["2023-09-01", "2023-10-01", "2024-03-01"],
        "end_date": ["2023-09-03", "", "2024-03-02"],
        "hours": ["10", "8", "12"],
        "status": ["completed", "dropped", "enrolled"],
        "score": ["88", "", ""],
        "satisfaction": ["5", "", ""],
    }
)
RESPONSES = pd.DataFrame(
    {
        "teacher_id": ["T1", "T1", "T2", "T3"],
        "item_id": ["I1", "I3", "I2", "I3"],
        "score": ["1", "2", "0", "3"],
        "taken_at": ["2024-05-01", "2024-05-01", "2024-05-02", "2024-05-02"],
    }
)
SCORES = pd.DataFrame(
    {
        "teacher_id": ["T1", "T2"],
        "competency": ["A1", "B1"],
        "score": ["70", "55.5"],
        "taken_at": ["2024-05-01", "2024-05-02"],
        "source": ["test", "self"],
    }
)
PROJECTS = pd.DataFrame({"project_id": ["P1"], "name": ["乡村教师研修"], "target_stages": ["primary;junior"]})
VALID = {
    "teachers": TEACHERS,
    "courses": COURSES,
    "items": ITEMS,
    "training_records": RECORDS,
    "responses": RESPONSES,
    "competency_scores": SCORES,
    "projects": PROJECTS,
}


def write_folder(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def with_row(frame: pd.DataFrame, **values: str) -> pd.DataFrame:
    """``frame`` plus one row built from the first row with ``values`` changed."""
    row = frame.iloc[[0]].copy()
    for column, value in values.items():
        row[column] = value
    return pd.concat([frame, row], ignore_index=True)


def run(tmp_path: Path, changes: dict[str, pd.DataFrame] | None = None) -> tuple[IngestReport, Workspace]:
    src = write_folder(tmp_path / "src", {**VALID, **(changes or {})})
    ws = Workspace.open(tmp_path / "ws")
    return ingest(src, ws, builtin_taxonomy=TAXONOMY), ws


def rejects(ws: Workspace, table: str) -> pd.DataFrame:
    return pd.read_csv(
        ws.rejects_dir / f"{table}.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig"
    )


def only_reason(ws: Workspace, table: str) -> str:
    found = rejects(ws, table)
    assert len(found) == 1, found
    return str(found["reason"].iloc[0])


# ------------------------------------------------------------------------------------------------- clean data


def test_valid_folder_is_accepted_whole(tmp_path: Path) -> None:
    report, ws = run(tmp_path)
    for name, frame in VALID.items():
        assert (report.counts(name).accepted, report.counts(name).rejected) == (len(frame), 0)
        assert len(ws.read_table(name)) == len(frame)


def test_values_are_normalised_to_contract_types(tmp_path: Path) -> None:
    _, ws = run(tmp_path)
    teachers = ws.read_table("teachers").set_index("teacher_id")
    assert list(teachers.loc["T3", "roles"]) == ["principal", "researcher"]
    assert list(teachers.loc["T2", "roles"]) == []
    assert teachers["years_teaching"].dtype == "Int64"
    assert teachers["province"].isna().all()  # absent optional column: null, never guessed
    courses = ws.read_table("courses").set_index("course_id")
    assert courses.loc["C3", "hours"] == 12.5
    assert list(courses.loc["C2", "competencies"]) == ["A2", "B1"]
    assert list(courses.loc["C1", "stages"]) == []
    assert courses["active"].all()  # true when absent
    records = ws.read_table("training_records").set_index("record_id")
    assert records.loc["R1", "start_date"] == pd.Timestamp("2023-09-01")
    assert pd.isna(records.loc["R2", "course_id"])
    assert pd.api.types.is_datetime64_any_dtype(records["end_date"])


def test_absent_defaults_are_filled(tmp_path: Path) -> None:
    items = ITEMS.drop(columns=["max_score"])
    _, ws = run(tmp_path, {"items": items})
    assert ws.read_table("items")["max_score"].tolist() == [1.0, 1.0, 1.0]
    assert ws.read_table("projects")["class_size"].tolist() == [50]


def test_extra_columns_are_kept(tmp_path: Path) -> None:
    teachers = TEACHERS.assign(备注=["a", "", "c", "d"])
    _, ws = run(tmp_path, {"teachers": teachers})
    assert ws.read_table("teachers")["备注"].tolist()[:1] == ["a"]


def test_chinese_headers_and_enum_values_map_to_the_contract(tmp_path: Path) -> None:
    teachers = pd.DataFrame(
        {
            "教师编号": ["T1", "T2", "T3", "T4"],
            " 学段 ": ["小学", "初中", "高中", "幼儿园"],
            "任教学科": ["语文", "数学", "英语", "学前教育"],
            "城乡类型": ["乡村", "镇区", "城区", "乡村"],
            "职称": ["一级", "二级", "高级", "未定级"],
            "教龄": ["10", "3", "25", "0"],
            "岗位": ["班主任", "", "校长、教研员", "党组织书记；培训者"],
        }
    )
    report, ws = run(tmp_path, {"teachers": teachers})
    assert report.counts("teachers").rejected == 0
    table = ws.read_table("teachers")
    assert table["stage"].tolist() == ["primary", "junior", "senior", "kindergarten"]
    assert table["school_type"].tolist() == ["rural", "town", "urban", "rural"]
    assert table["title"].tolist() == ["first", "second", "senior", "none"]
    assert [list(r) for r in table["roles"]] == [
        ["head_teacher"],
        [],
        ["principal", "researcher"],
        ["party_secretary", "trainer"],
    ]


def test_headers_with_units_and_official_title_names_are_understood(tmp_path: Path) -> None:
    teachers = TEACHERS.rename(
        columns={"years_teaching": "教龄（年）", "title": "Title", "teacher_id": "教师编号*"}
    )
    teachers["Title"] = ["中小学一级教师", "二级教师", "中小学高级教师", "未定级"]
    report, ws = run(tmp_path, {"teachers": teachers})
    assert report.counts("teachers").rejected == 0
    table = ws.read_table("teachers")
    assert table["title"].tolist() == ["first", "second", "senior", "none"]
    assert table["years_teaching"].tolist() == [10, 3, 25, 0]


def test_course_and_record_chinese_enums_map_to_the_contract(tmp_path: Path) -> None:
    courses = COURSES.assign(
        format=["线上", "工作坊", "线下集中"], level=["入门", "进阶", "高级"], 实践性=["是", "否", ""]
    )
    records = RECORDS.assign(status=["结业", "退出", "在训"])
    _, ws = run(tmp_path, {"courses": courses, "training_records": records})
    table = ws.read_table("courses")
    assert table["format"].tolist() == ["online", "workshop", "offline"]
    assert table["level"].tolist() == [1, 2, 3]
    assert table["practical"].tolist()[:2] == [True, False] and pd.isna(table["practical"].iloc[2])
    assert ws.read_table("training_records")["status"].tolist() == ["completed", "dropped", "enrolled"]


def test_list_cells_split_on_semicolons_of_both_widths_and_dunhao(tmp_path: Path) -> None:
    courses = COURSES.assign(subjects=["语文;数学", "语文；英语", "物理、化学、物理"])
    _, ws = run(tmp_path, {"courses": courses})
    subjects = [list(s) for s in ws.read_table("courses")["subjects"]]
    assert subjects == [["语文", "数学"], ["语文", "英语"], ["物理", "化学"]]


def test_competencies_may_be_written_as_their_taxonomy_names(tmp_path: Path) -> None:
    courses = COURSES.assign(competencies=["师德规范", "a2", ""])
    _, ws = run(tmp_path, {"courses": courses})
    assert [list(c) for c in ws.read_table("courses")["competencies"]] == [["A1"], ["A2"], []]


DATE_SPELLINGS = [
    "2023-09-01",
    "2023/9/1",
    "2023年9月1日",
    "20230901",
    "2023.9.1",
    "2023-09-01 00:00:00",
    " 2023-9-1 ",
]


def test_common_date_spellings_are_accepted(tmp_path: Path) -> None:
    records = pd.concat(
        [
            RECORDS.iloc[[0]].assign(record_id=f"R{i}", start_date=d, end_date="")
            for i, d in enumerate(DATE_SPELLINGS)
        ],
        ignore_index=True,
    )
    report, ws = run(tmp_path, {"training_records": records})
    assert report.counts("training_records").rejected == 0
    assert (ws.read_table("training_records")["start_date"] == pd.Timestamp("2023-09-01")).all()


# ---------------------------------------------------------------------------------------------- one rule each


def test_missing_required_value_is_rejected_naming_the_column(tmp_path: Path) -> None:
    teachers = with_row(TEACHERS, teacher_id="T9", subject="  ")
    report, ws = run(tmp_path, {"teachers": teachers})
    assert report.counts("teachers").rejected == 1
    found = rejects(ws, "teachers").iloc[0]
    assert (found["row_number"], found["column"], found["reason"]) == (
        "6",
        "subject",
        "必填字段「任教学科」为空",
    )


def test_null_spellings_count_as_missing(tmp_path: Path) -> None:
    teachers = with_row(TEACHERS, teacher_id="T9", stage="NULL")
    _, ws = run(tmp_path, {"teachers": teachers})
    assert only_reason(ws, "teachers") == "必填字段「学段」为空"


def test_a_file_missing_a_required_column_is_refused_naming_file_and_column(tmp_path: Path) -> None:
    _, ws = run(tmp_path)
    before = ws.current_version()
    with pytest.raises(IngestRefused) as refused:
        run(tmp_path, {"teachers": TEACHERS.drop(columns=["subject"])})
    assert refused.value.problems == ["teachers.csv（教师表）缺少必填列 「任教学科」（subject）"]
    assert ws.current_version() == before and len(ws.read_table("teachers")) == len(TEACHERS)


def test_unknown_enum_value_is_rejected_listing_the_allowed_ones(tmp_path: Path) -> None:
    teachers = with_row(TEACHERS, teacher_id="T9", stage="大学")
    _, ws = run(tmp_path, {"teachers": teachers})
    assert only_reason(ws, "teachers") == "「学段」的值「大学」不在允许值 幼儿园/小学/初中/高中 中"


def test_unknown_element_of_an_enum_list_is_rejected(tmp_path: Path) -> None:
    teachers = with_row(TEACHERS, teacher_id="T9", roles="班主任;副校长")
    _, ws = run(tmp_path, {"teachers": teachers})
    assert only_reason(ws, "teachers").startswith("「岗位」中的值「副校长」不在允许值 班主任/校长/")


def test_negative_years_of_teaching_are_rejected(tmp_path: Path) -> None:
    teachers = with_row(TEACHERS, teacher_id="T9", years_teaching="-2")
    _, ws = run(tmp_path, {"teachers": teachers})
    assert only_reason(ws, "teachers") == "「教龄」的值「-2」超出允许范围（应 ≥ 0）"


def test_fractional_years_of_teaching_are_rejected(tmp_path: Path) -> None:
    teachers = with_row(TEACHERS, teacher_id="T9", years_teaching="2.5")
    _, ws = run(tmp_path, {"teachers": teachers})
    assert only_reason(ws, "teachers") == "「教龄」的值「2.5」不是整数"


def test_text_in_a_number_column_is_rejected(tmp_path: Path) -> None:
    records = with_row(RECORDS, record_id="R9", hours="十")
    _, ws = run(tmp_path, {"training_records": records})
    assert only_reason(ws, "training_records") == "「学时」的值「十」不是数字"


def test_negative_record_hours_are_rejected(tmp_path: Path) -> None:
    records = with_row(RECORDS, record_id="R9", hours="-1")
    _, ws = run(tmp_path, {"training_records": records})
    assert only_reason(ws, "training_records") == "「学时」的值「-1」超出允许范围（应 ≥ 0）"


def test_course_hours_must_be_positive(tmp_path: Path) -> None:
    courses = with_row(COURSES, course_id="C9", hours="0")
    _, ws = run(tmp_path, {"courses": courses})
    assert only_reason(ws, "courses") == "「学时」的值「0」超出允许范围（应 > 0）"


def test_score_above_100_is_rejected(tmp_path: Path) -> None:
    records = with_row(RECORDS, record_id="R9", score="101")
    _, ws = run(tmp_path, {"training_records": records})
    assert only_reason(ws, "training_records") == "「成绩」的值「101」超出允许范围（应在 0–100 之间）"


def test_satisfaction_outside_one_to_five_is_rejected(tmp_path: Path) -> None:
    records = with_row(RECORDS, record_id="R9", satisfaction="0")
    _, ws = run(tmp_path, {"training_records": records})
    assert only_reason(ws, "training_records") == "「满意度」的值「0」超出允许范围（应在 1–5 之间）"


def test_level_outside_one_to_three_is_rejected(tmp_path: Path) -> None:
    courses = with_row(COURSES, course_id="C9", level="4")
    _, ws = run(tmp_path, {"courses": courses})
    assert only_reason(ws, "courses") == "「层级」的值「4」超出允许范围（应在 1–3 之间）"


def test_unreadable_boolean_is_rejected(tmp_path: Path) -> None:
    courses = with_row(COURSES, course_id="C9").assign(practical=["是", "否", "", "也许"])
    _, ws = run(tmp_path, {"courses": courses})
    assert only_reason(ws, "courses") == "「实践性」的值「也许」应为 是 或 否"


BAD_DATES = ["2023-13-01", "2023-02-30", "昨天", "45170", "1800-01-01"]


def test_unparseable_dates_are_rejected_with_the_spellings_that_work(tmp_path: Path) -> None:
    bad = pd.concat(
        [
            RECORDS.iloc[[0]].assign(record_id=f"R9{i}", start_date=d, end_date="")
            for i, d in enumerate(BAD_DATES)
        ],
        ignore_index=True,
    )
    _, ws = run(tmp_path, {"training_records": pd.concat([RECORDS, bad], ignore_index=True)})
    reasons = rejects(ws, "training_records")["reason"].tolist()
    assert reasons == [
        f"「开始日期」的值「{d}」不是有效日期（可写作 2023-09-01、2023/9/1、2023年9月1日 或 20230901）"
        for d in BAD_DATES
    ]


def test_record_ending_before_it_starts_is_rejected(tmp_path: Path) -> None:
    records = with_row(RECORDS, record_id="R9", start_date="2023-09-05", end_date="2023-09-01")
    _, ws = run(tmp_path, {"training_records": records})
    assert only_reason(ws, "training_records") == "「结束日期」早于「开始日期」"


def test_duplicate_id_keeps_the_first_row_and_points_back_to_it(tmp_path: Path) -> None:
    courses = with_row(COURSES, title="另一门课")  # same course_id C1 as row 2
    _, ws = run(tmp_path, {"courses": courses})
    assert only_reason(ws, "courses") == "与第 2 行的课程编号重复，保留首行"
    assert ws.read_table("courses").set_index("course_id").loc["C1", "title"] == "师德修养"


def test_duplicate_of_a_rejected_row_is_not_a_duplicate(tmp_path: Path) -> None:
    broken_first = pd.concat([COURSES.iloc[[0]].assign(hours="-1"), COURSES], ignore_index=True)
    _, ws = run(tmp_path, {"courses": broken_first})
    assert only_reason(ws, "courses").startswith("「学时」的值「-1」")
    assert ws.read_table("courses")["course_id"].tolist() == ["C1", "C2", "C3"]


def test_duplicate_in_a_second_file_names_the_file_of_the_first(tmp_path: Path) -> None:
    src = write_folder(tmp_path / "src", VALID)
    TEACHERS.iloc[[1]].to_csv(src / "teachers_2.csv", index=False)
    report = ingest(src, tmp_path / "ws", builtin_taxonomy=TAXONOMY)
    assert report.counts("teachers").files == ("teachers.csv", "teachers_2.csv")
    assert (
        only_reason(Workspace.open(tmp_path / "ws"), "teachers")
        == "与 teachers.csv 第 3 行的教师编号重复，保留首行"
    )


def test_record_of_an_unknown_teacher_is_rejected(tmp_path: Path) -> None:
    records = with_row(RECORDS, record_id="R9", teacher_id="T000123")
    _, ws = run(tmp_path, {"training_records": records})
    assert (
        only_reason(ws, "training_records")
        == "教师编号 T000123 在教师表中不存在，请核对编号，或先在教师表中补录"
    )


def test_record_of_an_unknown_course_is_rejected(tmp_path: Path) -> None:
    records = with_row(RECORDS, record_id="R9", course_id="C404")
    _, ws = run(tmp_path, {"training_records": records})
    assert (
        only_reason(ws, "training_records")
        == "课程编号 C404 在课程表中不存在，请核对编号，或先在课程表中补录"
    )


def test_record_of_a_rejected_teacher_is_rejected_pointing_at_the_teachers_rejects(tmp_path: Path) -> None:
    teachers = TEACHERS.assign(stage=["primary", "junior", "senior", "大学"])
    records = with_row(RECORDS, record_id="R9", teacher_id="T4")
    report, ws = run(tmp_path, {"teachers": teachers, "training_records": records})
    assert report.counts("training_records").rejected == 1
    assert (
        only_reason(ws, "training_records")
        == "教师编号 T4 在教师表中的行未通过校验（见 rejects/teachers.csv），请先更正该行"
    )


def test_reference_to_a_table_never_imported_asks_for_that_file(tmp_path: Path) -> None:
    src = write_folder(tmp_path / "src", {"training_records": RECORDS})
    report = ingest(src, tmp_path / "ws", builtin_taxonomy=TAXONOMY)
    assert report.counts("training_records").accepted == 0
    reasons = rejects(Workspace.open(tmp_path / "ws"), "training_records")["reason"]
    assert reasons.iloc[0].startswith(
        "教师编号 T1 无法核对：本次未导入教师表，请把教师表文件放入同一文件夹后重新导入"
    )


def test_response_to_an_unknown_item_or_teacher_is_rejected(tmp_path: Path) -> None:
    responses = with_row(with_row(RESPONSES, item_id="I404"), teacher_id="T404")
    _, ws = run(tmp_path, {"responses": responses})
    assert rejects(ws, "responses")["reason"].tolist() == [
        "题目编号 I404 在题目表中不存在，请核对编号，或先在题目表中补录",
        "教师编号 T404 在教师表中不存在，请核对编号，或先在教师表中补录",
    ]


def test_response_above_the_item_maximum_is_rejected(tmp_path: Path) -> None:
    responses = with_row(RESPONSES, item_id="I1", score="2", taken_at="2024-06-01")
    _, ws = run(tmp_path, {"responses": responses})
    assert only_reason(ws, "responses") == "「得分」的值「2」超过该题满分 1"


def test_score_of_an_unknown_teacher_is_rejected(tmp_path: Path) -> None:
    scores = with_row(SCORES, teacher_id="T404")
    _, ws = run(tmp_path, {"competency_scores": scores})
    assert (
        only_reason(ws, "competency_scores")
        == "教师编号 T404 在教师表中不存在，请核对编号，或先在教师表中补录"
    )


def test_unknown_competency_codes_are_rejected_naming_the_code(tmp_path: Path) -> None:
    courses = with_row(COURSES, course_id="C9", competencies="A1;X99")
    items = with_row(ITEMS, item_id="I9", competencies="Q7")
    scores = with_row(SCORES, competency="Z1")
    _, ws = run(tmp_path, {"courses": courses, "items": items, "competency_scores": scores})
    assert only_reason(ws, "courses") == "「能力点」中的代码「X99」不在能力框架中"
    assert only_reason(ws, "items") == "「能力点」中的代码「Q7」不在能力框架中"
    assert only_reason(ws, "competency_scores") == "「能力代码」中的代码「Z1」不在能力框架中"


def test_item_without_competencies_is_rejected(tmp_path: Path) -> None:
    items = with_row(ITEMS, item_id="I9", competencies=" ; ")
    _, ws = run(tmp_path, {"items": items})
    assert only_reason(ws, "items") == "必填字段「能力点」为空"


def test_several_problems_of_one_row_are_all_listed(tmp_path: Path) -> None:
    records = with_row(RECORDS, record_id="R9", status="done", score="120", teacher_id="T404")
    _, ws = run(tmp_path, {"training_records": records})
    found = rejects(ws, "training_records").iloc[0]
    assert found["column"] == "status；score；teacher_id"
    assert found["reason"].split("；")[0] == "「状态」的值「done」不在允许值 在训/结业/退出/未参训 中"
    assert len(found["reason"].split("；")) == 3


def test_malformed_csv_row_is_rejected_with_its_raw_text(tmp_path: Path) -> None:
    src = write_folder(tmp_path / "src", VALID)
    with open(src / "teachers.csv", "a", encoding="utf-8") as f:
        f.write("T9,primary\n")
    report = ingest(src, tmp_path / "ws", builtin_taxonomy=TAXONOMY)
    found = rejects(Workspace.open(tmp_path / "ws"), "teachers")
    assert report.counts("teachers").rows_in == len(TEACHERS) + 1
    assert found["reason"].tolist() == [
        "字段数与表头不符（表头 8 列，该行 2 列），请检查该行是否缺项、多出分隔符或引号未闭合"
    ]
    assert found["raw_line"].tolist() == ["T9,primary"]


# ------------------------------------------------------------------------------------------------- quarantine


def test_reject_file_keeps_source_row_and_every_raw_column(tmp_path: Path) -> None:
    teachers = with_row(TEACHERS, teacher_id="T9", stage="大学").assign(备注="x")
    _, ws = run(tmp_path, {"teachers": teachers})
    found = rejects(ws, "teachers")
    assert list(found.columns[:4]) == ["source_file", "row_number", "column", "reason"]
    assert found.iloc[0][["source_file", "row_number", "teacher_id", "stage", "roles", "备注"]].tolist() == [
        "teachers.csv",
        "6",
        "T9",
        "大学",
        "head_teacher",
        "x",
    ]


def test_rows_in_equal_accepted_plus_rejected_for_every_table(tmp_path: Path) -> None:
    changes = {
        "teachers": with_row(TEACHERS, teacher_id="", stage="x"),
        "training_records": with_row(with_row(RECORDS, hours="-3"), teacher_id="T9"),
        "responses": with_row(RESPONSES, score="abc"),
    }
    report, ws = run(tmp_path, changes)
    for t in report.tables:
        assert t.rows_in == t.accepted + t.rejected == len({**VALID, **changes}[t.table])
        assert len(ws.read_table(t.table)) == t.accepted
        assert len(rejects(ws, t.table)) == t.rejected
        assert (rejects(ws, t.table)["reason"] != "").all()


# ----------------------------------------------------------------------------------------- folder & workspace


def test_deployment_taxonomy_replaces_the_builtin_one(tmp_path: Path) -> None:
    own = pd.DataFrame({"编码": ["K1", "K2"], "名称": ["自定能力一", "自定能力二"], "领域": ["自定", "自定"]})
    courses = COURSES.assign(competencies=["K1", "K2;K1", "A1"])
    src = write_folder(
        tmp_path / "src", {**VALID, "courses": courses, "items": ITEMS.assign(competencies="K1")}
    )
    own.to_csv(src / "能力框架.csv", index=False)
    report = ingest(src, tmp_path / "ws", builtin_taxonomy=TAXONOMY)
    ws = Workspace.open(tmp_path / "ws")
    assert report.taxonomy_source == "能力框架.csv"
    assert ws.read_table("taxonomy")["code"].tolist() == ["K1", "K2"]
    assert only_reason(ws, "courses") == "「能力点」中的代码「A1」不在能力框架中"
    assert report.counts("competency_scores").rejected == len(SCORES)  # A1/B1 are not in the new framework


def test_builtin_taxonomy_is_written_when_the_folder_has_none(tmp_path: Path) -> None:
    report, ws = run(tmp_path)
    assert report.taxonomy_source == "builtin"
    taxonomy = ws.read_table("taxonomy")
    assert taxonomy["code"].tolist() == ["A1", "A2", "B1"]
    assert list(taxonomy.columns[:6]) == ["code", "name", "domain", "description", "environment", "dimension"]


def version_files(ws: Workspace) -> dict[Path, object]:
    """The current version's files: bytes, and the report and manifest as JSON without the version's name."""
    folder = ws.version_dir
    assert folder is not None
    out: dict[Path, object] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix == ".json":
            out[p.relative_to(folder)] = {
                k: v for k, v in json.loads(p.read_text()).items() if k not in ("version", "previous")
            }
        elif p.is_file():
            out[p.relative_to(folder)] = p.read_bytes()
    return out


def test_ingesting_the_same_folder_twice_gives_byte_identical_files(tmp_path: Path) -> None:
    changes = {"teachers": with_row(TEACHERS, teacher_id="T9", stage="大学")}
    _, ws = run(tmp_path, changes)
    first = version_files(ws)
    _, ws = run(tmp_path, changes)
    assert ws.current_version() == "000002"
    assert version_files(ws) == first


def test_tables_are_queryable_with_duckdb(tmp_path: Path) -> None:
    _, ws = run(tmp_path)
    rows = (
        ws.duckdb().execute("SELECT stage, count(*) FROM teachers GROUP BY stage ORDER BY stage").fetchall()
    )
    assert rows == [("junior", 1), ("kindergarten", 1), ("primary", 1), ("senior", 1)]


def test_file_stems_in_chinese_and_unknown_stems_are_recognised(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    TEACHERS.to_csv(src / "2024年教师名单.csv", index=False)
    COURSES.to_csv(src / "export_0001.csv", index=False)  # known only by its header
    pd.DataFrame({"x": [1]}).to_csv(src / "notes.csv", index=False)
    (src / "readme.md").write_text("说明")
    report = ingest(src, tmp_path / "ws", builtin_taxonomy=TAXONOMY)
    assert report.counts("teachers").files == ("2024年教师名单.csv",)
    assert report.counts("courses").files == ("export_0001.csv",)
    assert {s.file for s in report.skipped} == {"notes.csv", "readme.md"}


def test_references_to_a_table_not_in_the_folder_use_the_workspace(tmp_path: Path) -> None:
    run(tmp_path)
    later = write_folder(
        tmp_path / "later", {"training_records": with_row(RECORDS, record_id="R9", teacher_id="T404")}
    )
    report = ingest(later, tmp_path / "ws", builtin_taxonomy=TAXONOMY)
    assert (report.counts("training_records").accepted, report.counts("training_records").rejected) == (3, 1)


def test_unreadable_file_raises_before_anything_is_written(tmp_path: Path) -> None:
    src = write_folder(tmp_path / "src", VALID)
    (src / "courses.xlsx").write_bytes(b"not a zip at all")
    with pytest.raises(UnreadableFileError, match="courses.xlsx"):
        ingest(src, tmp_path / "ws", builtin_taxonomy=TAXONOMY)
    assert not (tmp_path / "ws" / "tables").exists()


def test_report_is_written_as_json_and_renders_as_a_table(tmp_path: Path) -> None:
    from rich.console import Console

    from tdr.render import ingest_table

    report, ws = run(tmp_path, {"teachers": with_row(TEACHERS, teacher_id="T9", stage="大学")})
    saved = json.loads((ws.root / "ingest_report.json").read_text(encoding="utf-8"))
    assert saved["tables"]["teachers"] == {
        "files": ["teachers.csv"],
        "rows_in": 5,
        "accepted": 4,
        "rejected": 1,
    }
    console = Console(record=True, width=140)
    console.print(ingest_table(report))
    text = console.export_text()
    assert "教师表" in text and "teachers" in text


# ---------------------------------------------------------------------------------------------- other sources


def test_excel_serial_dates_are_accepted_from_xlsx(tmp_path: Path) -> None:
    src = write_folder(tmp_path / "src", {k: v for k, v in VALID.items() if k != "training_records"})
    book = openpyxl.Workbook()
    book.active.append(["record_id", "teacher_id", "start_date", "status"])
    book.active.append(["R1", "T1", 45170, "completed"])
    book.active.append(["R2", "T2", dt.datetime(2023, 9, 2), "completed"])
    book.save(src / "training_records.xlsx")
    ingest(src, tmp_path / "ws", builtin_taxonomy=TAXONOMY)
    dates = Workspace.open(tmp_path / "ws").read_table("training_records")["start_date"].tolist()
    assert dates == [pd.Timestamp("2023-09-01"), pd.Timestamp("2023-09-02")]


def test_a_generated_province_ingests_without_a_reject(tmp_path: Path) -> None:
    from data.synthetic import generate

    generate(tmp_path / "province", n_teachers=150, seed=3)
    report = ingest(tmp_path / "province", tmp_path / "ws")
    assert report.rejected == 0
    assert report.counts("teachers").accepted == 150
    assert {t.table for t in report.tables} >= {
        "teachers",
        "courses",
        "training_records",
        "items",
        "responses",
    }


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_ingest_prints_the_counts_and_exits_zero_even_with_rejects(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tdr.cli import app

    src = write_folder(
        tmp_path / "src", {**VALID, "teachers": with_row(TEACHERS, teacher_id="T9", stage="大学")}
    )
    result = CliRunner().invoke(app, ["ingest", str(src), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    assert "教师表" in result.output and "被拒绝的行及原因见" in result.output
    saved = json.loads((tmp_path / "ws" / "ingest_report.json").read_text(encoding="utf-8"))
    assert saved["tables"]["teachers"]["rejected"] == 1


def test_cli_ingest_exits_non_zero_naming_the_unreadable_file_and_why(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tdr.cli import app

    src = write_folder(tmp_path / "src", VALID)
    (src / "courses.parquet").write_bytes(b"PAR1 but then nothing")
    result = CliRunner().invoke(app, ["ingest", str(src), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code != 0
    said = result.output.replace("\n", "")  # the console wraps long lines
    assert "courses.parquet" in said and "不是有效的 Parquet 文件" in said


# ------------------------------------------------------------------------------------- refusals and versions


def test_a_header_only_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IngestRefused, match=r"teachers.csv（教师表）只有表头，没有数据行"):
        run(tmp_path, {"teachers": TEACHERS.iloc[:0]})
    assert not Workspace.open(tmp_path / "ws").has_table("teachers")


def test_a_zero_byte_file_is_refused(tmp_path: Path) -> None:
    src = write_folder(tmp_path / "src", VALID)
    (src / "teachers.csv").write_bytes(b"")
    with pytest.raises(IngestRefused, match=r"teachers.csv（教师表）是空文件（0 字节）"):
        ingest(src, tmp_path / "ws", builtin_taxonomy=TAXONOMY)


def test_a_table_shrinking_sharply_is_refused_unless_replaced(tmp_path: Path) -> None:
    _, ws = run(tmp_path)
    with pytest.raises(IngestRefused) as refused:
        run(tmp_path, {"teachers": TEACHERS.iloc[:2]})
    assert refused.value.problems[0] == (
        "教师表将从 4 行减少到 2 行（减少 50%，超过允许的 10%），来自 teachers.csv；"
        "若确需替换整张表，请加 --replace 重新导入"
    )
    assert refused.value.problems[1].startswith("培训记录表将从 3 行减少到 2 行")  # its teacher went
    assert len(ws.read_table("teachers")) == 4
    src = write_folder(tmp_path / "src", {**VALID, "teachers": TEACHERS.iloc[:2]})
    report = ingest(src, ws, builtin_taxonomy=TAXONOMY, replace=True)
    assert len(ws.read_table("teachers")) == report.counts("teachers").accepted == 2


def test_a_table_whose_every_row_is_rejected_does_not_empty_the_workspace(tmp_path: Path) -> None:
    _, ws = run(tmp_path)
    with pytest.raises(IngestRefused, match="课程表将从 3 行减少到 0 行"):
        run(tmp_path, {"courses": COURSES.assign(hours="-1")})
    assert len(ws.read_table("courses")) == 3


def test_tables_absent_from_the_folder_are_kept_in_the_new_version(tmp_path: Path) -> None:
    _, ws = run(tmp_path)
    later = write_folder(tmp_path / "later", {"training_records": with_row(RECORDS, record_id="R9")})
    ingest(later, ws, builtin_taxonomy=TAXONOMY)
    manifest = ws.manifest()
    assert manifest["version"] == "000002" and manifest["previous"] == "000001"
    assert manifest["tables"]["training_records"] == {
        "rows": 4,
        "parts": ["part-00000.parquet"],
        "kept": False,
    }
    assert manifest["tables"]["teachers"]["kept"] and len(ws.read_table("teachers")) == len(TEACHERS)
    assert (ws.rejects_dir / "teachers.csv").exists()


def test_only_the_previous_version_is_kept_besides_the_current(tmp_path: Path) -> None:
    for _ in range(3):
        _, ws = run(tmp_path)
    assert sorted(p.name for p in (ws.root / "versions").iterdir()) == ["000002", "000003"]


def test_a_pinned_workspace_reads_its_version_while_a_new_one_is_ingested(tmp_path: Path) -> None:
    _, ws = run(tmp_path)
    pinned = ws.pinned()
    run(tmp_path, {"teachers": with_row(TEACHERS, teacher_id="T9")})
    assert len(pinned.read_table("teachers")) == 4
    assert len(ws.read_table("teachers")) == 5
    assert len(pd.read_parquet(ws.root / "tables" / "teachers.parquet")) == 5  # the fixed link follows


def test_a_workspace_from_before_versions_keeps_its_tables(tmp_path: Path) -> None:
    _, made = run(tmp_path / "made")
    ws = Workspace.open(tmp_path / "old")
    ws.tables_dir.mkdir()
    for name in ("teachers", "courses", "taxonomy"):
        made.read_table(name).to_parquet(ws.tables_dir / f"{name}.parquet")
    assert ws.has_table("teachers") and ws.current_version() is None
    later = write_folder(tmp_path / "later", {"training_records": RECORDS})
    report = ingest(later, ws, builtin_taxonomy=TAXONOMY)
    assert report.counts("training_records").accepted == 3
    assert ws.current_version() == "000001" and (ws.root / "tables").is_symlink()
    assert len(ws.read_table("teachers")) == 4 and ws.manifest()["tables"]["teachers"]["kept"]


def test_cli_ingest_refusal_exits_3_naming_the_file_and_why(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tdr.cli import app

    src = write_folder(tmp_path / "src", {**VALID, "teachers": TEACHERS.drop(columns=["teacher_id"])})
    result = CliRunner().invoke(app, ["ingest", str(src), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 3
    said = result.output.replace("\n", "")
    assert "工作区未做任何更改" in said and "teachers.csv（教师表）缺少必填列 「教师编号」" in said


# ------------------------------------------------------------------------------------------- garbled input


def test_double_encoded_utf8_rows_are_rejected_as_mojibake(tmp_path: Path) -> None:
    garbled = TEACHERS.assign(county=[c.encode("utf-8").decode("gbk", "replace") for c in TEACHERS["county"]])
    _, ws = run(
        tmp_path, {"teachers": pd.concat([TEACHERS, garbled.assign(teacher_id="X" + garbled["teacher_id"])])}
    )
    found = rejects(ws, "teachers")
    assert found["teacher_id"].tolist() == ["XT1", "XT2", "XT3", "XT4"]
    assert found["reason"].str.contains("疑似乱码（不常见的汉字组合），文件编码可能有误").all()
    assert found["column"].tolist() == ["county"] * 4


def test_merged_county_cells_in_xlsx_reach_every_teacher(tmp_path: Path) -> None:
    src = write_folder(tmp_path / "src", {k: v for k, v in VALID.items() if k != "teachers"})
    book = openpyxl.Workbook()
    book.active.append(["教师编号", "学段", "任教学科", "县区"])
    for i in range(1, 5):
        book.active.append([f"T{i}", "小学", "语文", "南昌县" if i == 1 else None])
    book.active.merge_cells("D2:D5")
    book.save(src / "teachers.xlsx")
    ingest(src, tmp_path / "ws", builtin_taxonomy=TAXONOMY)
    assert Workspace.open(tmp_path / "ws").read_table("teachers")["county"].tolist() == ["南昌县"] * 4


def test_rejected_cells_that_a_spreadsheet_would_run_are_escaped(tmp_path: Path) -> None:
    link = '=HYPERLINK("http://x.example","点我")'
    teachers = with_row(with_row(TEACHERS, teacher_id="T9", stage=link), teacher_id="T8", years_teaching="-5")
    _, ws = run(tmp_path, {"teachers": teachers})
    found = rejects(ws, "teachers").set_index("teacher_id")
    assert found.loc["T9", "stage"] == "'" + link
    assert found.loc["T8", "years_teaching"] == "-5"  # a plain number runs nothing
    assert not found.map(lambda v: str(v).startswith(("=", "+", "@"))).any().any()
