"""Readers: every format and encoding a platform exports, every row kept with the number a clerk sees."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data import readers
from data.readers import (
    RAW_LINE,
    READ_PROBLEM,
    ROW_NUMBER,
    SOURCE_FILE,
    UnreadableFileError,
    mojibake,
    read_file,
)

CHINESE_CSV = "教师编号,学段,任教学科,县区\nT001,小学,语文,南昌县\nT002,初中,数学,进贤县\n"


def _rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    return frame.drop(columns=[SOURCE_FILE, READ_PROBLEM, RAW_LINE]).to_dict("records")


def test_utf8_csv_is_read_as_strings_with_excel_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "teachers.csv"
    path.write_text("teacher_id,years_teaching\nT001,007\nT002,12\n", encoding="utf-8")
    raw = read_file(path)
    assert raw.encoding == "utf-8"
    assert raw.header == ("teacher_id", "years_teaching")
    assert _rows(raw.frame) == [
        {"teacher_id": "T001", "years_teaching": "007", ROW_NUMBER: 2},
        {"teacher_id": "T002", "years_teaching": "12", ROW_NUMBER: 3},
    ]
    assert set(raw.frame[SOURCE_FILE]) == {"teachers.csv"}


def test_utf8_with_bom_csv_loses_the_bom_from_its_first_header(tmp_path: Path) -> None:
    path = tmp_path / "教师.csv"
    path.write_text(CHINESE_CSV, encoding="utf-8-sig")
    raw = read_file(path)
    assert raw.encoding == "utf-8-sig"
    assert raw.header[0] == "教师编号"
    assert raw.frame["学段"].tolist() == ["小学", "初中"]


def test_gbk_csv_with_chinese_headers_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "教师.csv"
    path.write_bytes(CHINESE_CSV.encode("gbk"))
    raw = read_file(path)
    assert raw.encoding == "gb18030"
    assert raw.header == ("教师编号", "学段", "任教学科", "县区")
    assert raw.frame["县区"].tolist() == ["南昌县", "进贤县"]


def test_gb18030_only_characters_are_decoded(tmp_path: Path) -> None:
    path = tmp_path / "teachers.csv"
    path.write_bytes("teacher_id,name\nT001,㐀㐁\n".encode("gb18030"))  # CJK extension A: not in GBK
    assert read_file(path).frame["name"].tolist() == ["㐀㐁"]


def test_tab_separated_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "teachers.txt"
    path.write_text("teacher_id\tstage\nT001\tprimary\n", encoding="utf-8")
    assert read_file(path).frame["stage"].tolist() == ["primary"]


def test_quoted_newline_and_comma_stay_inside_one_row(tmp_path: Path) -> None:
    path = tmp_path / "courses.csv"
    path.write_text('course_id,description\nC1,"第一行\n第二行, 仍是简介"\nC2,短\n', encoding="utf-8")
    raw = read_file(path)
    assert raw.frame["description"].tolist() == ["第一行\n第二行, 仍是简介", "短"]
    assert raw.frame[ROW_NUMBER].tolist() == [2, 3]


def test_rows_with_too_many_or_too_few_fields_are_kept_and_flagged(tmp_path: Path) -> None:
    path = tmp_path / "teachers.csv"
    path.write_text(
        "teacher_id,stage,subject\nT1,primary,语文\nT2,junior\nT3,senior,数学,多余\nT4,primary,英语\n"
    )
    frame = read_file(path).frame
    assert frame[ROW_NUMBER].tolist() == [2, 3, 4, 5]
    assert frame[READ_PROBLEM].tolist() == [
        "",
        "字段数与表头不符（表头 3 列，该行 2 列），请检查该行是否缺项、多出分隔符或引号未闭合",
        "字段数与表头不符（表头 3 列，该行 4 列），请检查该行是否缺项、多出分隔符或引号未闭合",
        "",
    ]
    assert frame[RAW_LINE].tolist()[1:3] == ["T2,junior", "T3,senior,数学,多余"]


def test_a_stray_quote_does_not_swallow_the_rows_after_it(tmp_path: Path) -> None:
    path = tmp_path / "teachers.csv"
    path.write_text('teacher_id,stage,subject\nT1,"primary,语文\nT2,junior,数学\nT3,senior,英语\n')
    frame = read_file(path).frame
    assert frame["teacher_id"].tolist() == ["T1", "T2", "T3"]
    assert frame[ROW_NUMBER].tolist() == [2, 3, 4]
    assert frame[READ_PROBLEM].tolist()[1:] == ["", ""]
    assert frame[READ_PROBLEM].iloc[0].startswith("字段数与表头不符")


def test_blank_lines_are_no_rows_but_count_in_the_numbering(tmp_path: Path) -> None:
    path = tmp_path / "teachers.csv"
    path.write_text("teacher_id,stage\nT1,primary\n\n,\nT2,junior\n\n")
    frame = read_file(path).frame
    assert frame["teacher_id"].tolist() == ["T1", "T2"]
    assert frame[ROW_NUMBER].tolist() == [2, 5]


def test_damaged_bytes_flag_only_their_row(tmp_path: Path) -> None:
    path = tmp_path / "teachers.csv"
    good = "teacher_id,subject\nT1,语文\nT2,数学\nT3,英语\n".encode()
    damaged = good.replace("数学".encode(), b"\xff\x00" + "数学".encode())
    path.write_bytes(damaged)
    frame = read_file(path).frame
    assert frame["teacher_id"].tolist() == ["T1", "T2", "T3"]
    problems = frame[READ_PROBLEM].tolist()
    assert problems[0] == problems[2] == ""
    assert "无法识别的字符" in problems[1]


def test_xlsx_first_sheet_is_read_as_the_text_a_clerk_sees(tmp_path: Path) -> None:
    path = tmp_path / "courses.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["course_id", "hours", "start", "active", "score"])
    sheet.append([101, 24.0, dt.datetime(2023, 9, 1), True, 1.5])
    sheet.append([None, None, None, None, None])
    sheet.append(["C2", 8, dt.datetime(2023, 9, 2, 8, 30), False, None])
    book.create_sheet("ignored").append(["not", "read"])
    book.save(path)
    raw = read_file(path)
    assert raw.kind == "xlsx"
    assert _rows(raw.frame) == [
        {
            "course_id": "101",
            "hours": "24",
            "start": "2023-09-01",
            "active": "true",
            "score": "1.5",
            ROW_NUMBER: 2,
        },
        {
            "course_id": "C2",
            "hours": "8",
            "start": "2023-09-02 08:30:00",
            "active": "false",
            "score": "",
            ROW_NUMBER: 4,
        },
    ]


def test_xlsx_data_sheet_is_found_behind_an_instructions_sheet_and_below_a_title_row(tmp_path: Path) -> None:
    path = tmp_path / "教师名单.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "填表说明"
    book.active.append(["学段请填写：幼儿园/小学/初中/高中"])
    data = book.create_sheet("教师")
    data.append(["2024年南昌县教师名单"])
    data.append(["教师编号", "学段", "任教学科"])
    data.append(["T1", "小学", "语文"])
    book.save(path)
    raw = read_file(path)
    assert raw.header == ("教师编号", "学段", "任教学科")
    assert _rows(raw.frame) == [{"教师编号": "T1", "学段": "小学", "任教学科": "语文", ROW_NUMBER: 3}]


def test_xlsx_cells_beyond_the_header_flag_the_row(tmp_path: Path) -> None:
    path = tmp_path / "teachers.xlsx"
    book = openpyxl.Workbook()
    book.active.append(["teacher_id", "stage"])
    book.active.append(["T1", "primary", "stray"])
    book.save(path)
    frame = read_file(path).frame
    assert frame[READ_PROBLEM].tolist() == [
        "字段数与表头不符（表头 2 列，该行 3 列），请检查该行是否缺项、多出分隔符或引号未闭合"
    ]


def test_parquet_columns_of_any_type_are_read_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "responses.parquet"
    table = pa.table(
        {
            "teacher_id": pa.array([1, 2, None], pa.int64()),
            "score": pa.array([0.5, None, 1.0]),
            "count": pa.array([3.0, None, 4.0]),  # ints that went through a float column
            "taken_at": pa.array([dt.datetime(2023, 9, 1), None, dt.datetime(2024, 1, 2, 8, 0)]),
            "day": pa.array([dt.date(2023, 9, 1), None, None]),
            "competencies": pa.array([["A1", "B2"], [], None]),
            "flag": pa.array([True, False, None]),
        }
    )
    pq.write_table(table, path)
    raw = read_file(path)
    assert _rows(raw.frame) == [
        {
            "teacher_id": "1",
            "score": "0.5",
            "count": "3",
            "taken_at": "2023-09-01 00:00:00",
            "day": "2023-09-01",
            "competencies": "A1;B2",
            "flag": "true",
            ROW_NUMBER: 2,
        },
        {
            "teacher_id": "2",
            "score": "",
            "count": "",
            "taken_at": "",
            "day": "",
            "competencies": "",
            "flag": "false",
            ROW_NUMBER: 3,
        },
        {
            "teacher_id": "",
            "score": "1",
            "count": "4",
            "taken_at": "2024-01-02 08:00:00",
            "day": "",
            "competencies": "",
            "flag": "",
            ROW_NUMBER: 4,
        },
    ]


def test_empty_csv_gives_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "teachers.csv"
    path.write_text("")
    assert read_file(path).frame.empty


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("teachers.csv", bytes(range(256)) * 64, "不是文本格式"),
        ("courses.xlsx", b"PK\x03\x04 definitely not a workbook", "不是有效的 XLSX"),
        ("responses.parquet", b"PAR1 garbage PAR1", "Parquet"),
        ("teachers.xls", b"\xd0\xcf\x11\xe0", ".xls"),
        ("teachers.json", b"{}", "不支持的文件类型"),
    ],
)
def test_a_file_that_cannot_be_read_at_all_names_itself_and_why(
    tmp_path: Path, name: str, content: bytes, why: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError) as caught:
        read_file(path)
    assert caught.value.path == path
    assert why in str(caught.value)
    assert name in str(caught.value)


def test_xlsx_merged_cells_give_every_row_of_their_range_the_value(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["teacher_id", "county", "subject"])
    for i in range(4):
        sheet.append([f"T{i}", "南昌县" if i == 0 else None, "语文"])
    sheet.merge_cells("B2:B4")
    book.save(tmp_path / "teachers.xlsx")
    frame = read_file(tmp_path / "teachers.xlsx").frame
    assert frame["county"].tolist() == ["南昌县", "南昌县", "南昌县", ""]
    assert (frame[READ_PROBLEM] == "").all()


def test_xlsx_formula_without_a_computed_value_flags_its_row(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["teacher_id", "教龄"])
    sheet.append(["T1", "=5+5"])  # written by a program: Excel never computed it
    sheet.append(["T2", 7])
    book.save(tmp_path / "teachers.xlsx")
    frame = read_file(tmp_path / "teachers.xlsx").frame
    assert frame[READ_PROBLEM].tolist() == [
        "公式单元格 「教龄」（=5+5） 没有计算结果，请在 Excel 中打开、保存后重新导出，或把公式粘贴为数值",
        "",
    ]


def test_a_big5_csv_is_decoded_as_big5_not_as_gbk_garble(tmp_path: Path) -> None:
    text = "教師編號,縣區,任教學科\nT1,南昌縣,國語\nT2,進賢縣,數學\n"
    (tmp_path / "teachers.csv").write_bytes(text.encode("big5"))
    raw = read_file(tmp_path / "teachers.csv")
    assert raw.encoding == "big5"
    assert raw.frame["縣區"].tolist() == ["南昌縣", "進賢縣"]


def test_mojibake_is_told_from_chinese_text() -> None:
    texts = pd.Series(["南昌县", "婺源县", "语文", "教師", "abc", "鏁欏笀", "╧", "x\x85y", "\ue000"])
    found = mojibake(texts)
    assert [f is None for f in found] == [True, True, True, True, True, False, False, False, False]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_a_big_csv_read_in_pieces_gives_what_it_gives_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    lines = ["教师编号,县区,备注"]
    for i in range(60):
        lines.append(f'T{i},南昌县,"多行\n备注{i}"' if i % 7 == 0 else f"T{i},进贤县,普通{i}")
        if i % 11 == 0:
            lines.extend(["", f"T{i}x,缺列"])  # a blank line, a short row
        if i == 50:
            lines.append('T99,"引号未闭合,x')  # a stray quote: the pieces after it cannot be cut
    (tmp_path / "t.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    whole = read_file(tmp_path / "t.csv")
    monkeypatch.setattr(readers, "CHUNK_BYTES", 64)
    pieces = read_file(tmp_path / "t.csv")
    assert pieces.header == whole.header and pieces.encoding == whole.encoding
    pd.testing.assert_frame_equal(pieces.frame, whole.frame)
    assert len(list(readers.open_file(tmp_path / "t.csv").frames())) > 5
