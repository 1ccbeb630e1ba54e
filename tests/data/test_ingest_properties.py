"""Property: whatever damage an export suffers, ingestion neither crashes nor loses a row.

Valid contract files are mutated (encodings, formats, Chinese headers, truncated rows, wrong types, swapped
columns, junk bytes); for every table, rows in = accepted + rejected, both as reported and as written.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.ingest import IngestRefused, UnreadableFileError, ingest
from data.workspace import Workspace

TAXONOMY = pd.DataFrame({"code": ["A1", "A2", "B1"], "name": ["师德规范", "学情分析", "课堂管理"]})

BASE: dict[str, pd.DataFrame] = {
    "teachers": pd.DataFrame(
        {
            "teacher_id": ["T1", "T2", "T3", "T4", "T5"],
            "stage": ["primary", "junior", "senior", "kindergarten", "primary"],
            "subject": ["语文", "数学", "英语", "学前教育", "科学"],
            "title": ["first", "second", "senior", "none", "third"],
            "years_teaching": ["10", "3", "25", "0", "7"],
            "roles": ["head_teacher", "", "principal;researcher", "", "trainer"],
        }
    ),
    "courses": pd.DataFrame(
        {
            "course_id": ["C1", "C2", "C3"],
            "title": ["师德修养", "学情分析方法", "课堂管理实务"],
            "hours": ["10", "8", "12.5"],
            "format": ["online", "workshop", "offline"],
            "competencies": ["A1", "A2;B1", ""],
        }
    ),
    "items": pd.DataFrame(
        {"item_id": ["I1", "I2"], "competencies": ["A1", "A2;B1"], "max_score": ["1", "2"]}
    ),
    "training_records": pd.DataFrame(
        {
            "record_id": ["R1", "R2", "R3", "R4", "R5", "R6"],
            "teacher_id": ["T1", "T2", "T3", "T4", "T5", "T1"],
            "course_id": ["C1", "", "C3", "C2", "C1", "C2"],
            "start_date": ["2023-09-01", "2023/10/1", "2024年3月1日", "20240401", "2024-05-01", "2024-06-01"],
            "hours": ["10", "8", "12", "6", "4", "2"],
            "status": ["completed", "dropped", "enrolled", "no_show", "completed", "结业"],
            "score": ["88", "", "", "", "75.5", ""],
        }
    ),
    "responses": pd.DataFrame(
        {
            "teacher_id": ["T1", "T1", "T2", "T3", "T4"],
            "item_id": ["I1", "I2", "I1", "I2", "I1"],
            "score": ["1", "2", "0", "1.5", "1"],
            "taken_at": ["2024-05-01"] * 5,
        }
    ),
}
CHINESE = {
    "teacher_id": "教师编号",
    "stage": "学段",
    "subject": "任教学科",
    "title": "职称",
    "years_teaching": "教龄",
    "roles": "岗位",
    "course_id": "课程编号",
    "hours": "学时",
    "status": "状态",
    "start_date": "开始日期",
}


@dataclass(frozen=True)
class Mutation:
    kind: str  # cell / swap / truncate / junk / extra_field
    a: int
    b: int
    text: str = ""
    junk: bytes = b""


mutations = st.one_of(
    st.builds(
        Mutation,
        st.just("cell"),
        st.integers(0, 50),
        st.integers(0, 50),
        st.one_of(
            st.text(max_size=6), st.sampled_from(["-5", "1e9", "abc", "2023-13-45", "；", "大学", " "])
        ),
    ),
    st.builds(Mutation, st.just("swap"), st.integers(0, 50), st.integers(0, 50)),
    st.builds(Mutation, st.just("truncate"), st.integers(0, 50), st.integers(0, 100)),
    st.builds(Mutation, st.just("extra_field"), st.integers(0, 50), st.integers(0, 50)),
    st.builds(
        Mutation,
        st.just("junk"),
        st.integers(0, 10_000),
        st.integers(0, 0),
        junk=st.binary(min_size=1, max_size=8),
    ),
)


@dataclass(frozen=True)
class Export:
    fmt: str  # csv / xlsx / parquet
    encoding: str  # for csv
    chinese_headers: bool
    mutations: tuple[Mutation, ...]


exports = st.builds(
    Export,
    st.sampled_from(["csv", "csv", "csv", "xlsx", "parquet"]),
    st.sampled_from(["utf-8", "utf-8-sig", "gbk"]),
    st.booleans(),
    st.lists(mutations, max_size=3).map(tuple),
)


def _mutate_frame(frame: pd.DataFrame, export: Export) -> pd.DataFrame:
    frame = frame.copy()
    columns = list(frame.columns)
    for m in export.mutations:
        if m.kind == "cell":
            frame.iat[m.a % len(frame), m.b % len(columns)] = m.text
        elif m.kind == "swap":
            i, j = m.a % len(columns), m.b % len(columns)
            columns[i], columns[j] = columns[j], columns[i]
            frame.columns = columns
    if export.chinese_headers:
        frame = frame.rename(columns=CHINESE)
    return frame


def _csv_bytes(frame: pd.DataFrame, export: Export) -> bytes:
    text = frame.to_csv(index=False, lineterminator="\r\n")  # CRLF: a cell holding a bare CR gets quoted
    lines = text.splitlines(keepends=True)
    for m in export.mutations:
        if m.kind == "truncate" and len(lines) > 1:
            i = 1 + m.a % (len(lines) - 1)
            lines[i] = lines[i][: m.b * len(lines[i]) // 100] + "\n"
        elif m.kind == "extra_field" and len(lines) > 1:
            i = 1 + m.a % (len(lines) - 1)
            lines[i] = lines[i].rstrip("\r\n") + f",多余{m.b}\r\n"
    encoding = "gb18030" if export.encoding == "gbk" else export.encoding
    data = "".join(lines).encode(encoding, errors="replace")
    return _with_junk(data, export)


def _with_junk(data: bytes, export: Export) -> bytes:
    for m in export.mutations:
        if m.kind == "junk":
            at = m.a % (len(data) + 1)
            data = data[:at] + m.junk + data[at:]
    return data


def _file_bytes(frame: pd.DataFrame, export: Export) -> bytes:
    if export.fmt == "csv":
        return _csv_bytes(frame, export)
    buffer = io.BytesIO()
    if export.fmt == "xlsx":
        book = openpyxl.Workbook()
        book.active.append(list(frame.columns))
        for row in frame.itertuples(index=False):
            book.active.append([_xlsx_safe(v) for v in row])
        book.save(buffer)
    else:
        frame.to_parquet(buffer, index=False)
    return _with_junk(buffer.getvalue(), export)


def _xlsx_safe(value: object) -> object:
    # openpyxl refuses control characters that XML cannot hold; an Excel file never contains them either
    return "".join(ch for ch in str(value) if ch >= " " or ch in "\t\n\r")


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.fixed_dictionaries({name: exports for name in BASE}))
def test_mutated_exports_never_crash_and_never_lose_a_row(plan: dict[str, Export]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, root = Path(tmp) / "src", Path(tmp) / "ws"
        src.mkdir()
        for name, export in plan.items():
            frame = _mutate_frame(BASE[name], export)
            (src / f"{name}.{export.fmt}").write_bytes(_file_bytes(frame, export))
        try:
            report = ingest(src, root, builtin_taxonomy=TAXONOMY)
        except UnreadableFileError as e:
            # only a binary format whose bytes were damaged may be unreadable; a text file never is
            damaged = {
                f"{n}.{x.fmt}"
                for n, x in plan.items()
                if x.fmt != "csv" and any(m.kind == "junk" for m in x.mutations)
            }
            assert e.path.name in damaged
            return
        except IngestRefused as e:
            # a file whose header lost a required column (or which lost every row) is refused whole, naming it
            files = {f"{n}.{x.fmt}" for n, x in plan.items()}
            assert all(problem.split("（")[0] in files for problem in e.problems)
            assert not Workspace.open(root).has_table("teachers")
            return
        ws = Workspace.open(root)
        for t in report.tables:
            assert t.rows_in == t.accepted + t.rejected
            rejects = pd.read_csv(
                ws.rejects_dir / f"{t.table}.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig"
            )
            assert len(ws.read_table(t.table)) == t.accepted
            assert len(rejects) == t.rejected
            assert (rejects["reason"] != "").all()
        clean = {
            n
            for n, x in plan.items()
            if x.fmt == "csv" and not any(m.kind in {"truncate", "extra_field", "junk"} for m in x.mutations)
        }
        for name in clean:  # without line damage every row of the file is counted
            assert report.counts(name).rows_in == len(BASE[name])
