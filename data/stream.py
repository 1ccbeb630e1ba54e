"""Teacher-sorted streaming of Parquet sources: the province in blocks of teachers, each block with its rows of
every other table, in one pass and with memory bounded by a block (batch scoring and portrait building read their
inputs this way).
"""

from __future__ import annotations

import tempfile
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data.schema import TableSpec

# rows per streamed read; memory grows with this times the widest table, not with the province (files are read
# without pyarrow's pre-buffering, which would load a whole file's column chunks at once)
READ_ROWS = 65_536
# an unsorted source (training records come in file order) is sorted out of core within this much memory
SORT_MEMORY = "512MB"
_ARROW = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.timestamp("ns"),
    "list": pa.list_(pa.string()),
}


def contract_schema(spec: TableSpec, columns: list[str] | None = None) -> pa.Schema:
    """The Arrow schema of a contract table (`columns` of it, default all): what a table the workspace lacks
    stands for, read as no rows."""
    names = columns if columns is not None else [c.name for c in spec.columns]
    return pa.schema([(n, _ARROW[spec.column(n).kind]) for n in names])


def parquet_files(path: Path) -> list[Path]:
    """A Parquet source: one file, or a folder of part files read in name order (hidden temporaries left out)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))


def source_schema(
    files: list[Path], columns: list[str] | None = None, empty: pa.Schema | None = None
) -> pa.Schema:
    """The source's Arrow schema with its pandas metadata, so that reading a block gives the same dtypes as
    pd.read_parquet on the source."""
    schema = pq.read_schema(files[0]) if files else empty
    if schema is None:
        raise ValueError("an empty source needs the schema it stands for")
    if columns is None:
        return schema
    return pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)


def is_sorted(files: list[Path]) -> bool:
    """Whether the source's rows are in teacher_id order (read in streams, the teacher_id column only)."""
    last: str | None = None
    for f in files:
        for batch in pq.ParquetFile(f, pre_buffer=False).iter_batches(
            batch_size=READ_ROWS, columns=["teacher_id"]
        ):
            ids = batch.column(0)
            if not len(ids):
                continue
            if last is not None and ids[0].as_py() < last:
                return False
            if len(ids) > 1 and not pc.all(pc.greater_equal(ids[1:], ids[:-1])).as_py():
                return False
            last = ids[-1].as_py()
    return True


def batches(files: list[Path], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The source's rows in file order, READ_ROWS at a time, as `schema` without metadata."""
    bare = schema.remove_metadata()
    for f in files:
        for batch in pq.ParquetFile(f, pre_buffer=False).iter_batches(
            batch_size=READ_ROWS, columns=bare.names
        ):
            yield batch.cast(bare)


def sorted_batches(files: list[Path], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The source's rows in teacher_id order (the source's own order within a teacher), without metadata."""
    if is_sorted(files):
        yield from batches(files, schema)
        return
    bare = schema.remove_metadata()
    with tempfile.TemporaryDirectory(prefix="tdr-sort-") as spill:
        con = duckdb.connect(config={"memory_limit": SORT_MEMORY, "temp_directory": spill})
        con.execute("SET enable_progress_bar = false")
        cols = ", ".join(f'"{c}"' for c in bare.names)
        # the file name and row number keep a teacher's rows in source order, as pandas' filter would
        query = con.sql(
            f"SELECT {cols} FROM read_parquet($files, filename = true, file_row_number = true) "
            "ORDER BY teacher_id, filename, file_row_number",
            params={"files": [str(f) for f in files]},
        )
        assert query is not None
        reader = query.to_arrow_reader(READ_ROWS)
        for batch in reader:
            yield batch.cast(bare)
        con.close()


def _count_upto(ids: pa.Array, last: str) -> int:
    """How many of the sorted ids are <= last (a binary search: blocks may be far smaller than a read)."""
    return bisect_right(range(len(ids)), last, key=lambda j: ids[j].as_py())


class Cursor:
    """A stream sorted by teacher_id, handed out up to a given teacher at a time."""

    def __init__(self, files: list[Path], schema: pa.Schema) -> None:
        self.schema = schema.remove_metadata()
        self._batches = sorted_batches(files, schema) if files else iter(())
        self._pending: list[pa.RecordBatch] = []
        self._exhausted = False

    def upto(self, last: str) -> pa.Table:
        """Every remaining row whose teacher_id is <= last."""
        while not self._exhausted and (
            not self._pending or self._pending[-1].column("teacher_id")[-1].as_py() <= last
        ):
            batch = next(self._batches, None)
            if batch is None:
                self._exhausted = True
            elif len(batch):
                self._pending.append(batch)
        taken: list[pa.RecordBatch] = []
        while self._pending:
            batch = self._pending[0]
            n = _count_upto(batch.column("teacher_id"), last)
            if n < len(batch):
                taken.append(batch.slice(0, n))
                self._pending[0] = batch.slice(n)
                break
            taken.append(self._pending.pop(0))
        return pa.Table.from_batches(taken, schema=self.schema)


def teacher_slices(files: list[Path], schema: pa.Schema, block_size: int) -> Iterator[pa.Table]:
    bare = schema.remove_metadata()
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in sorted_batches(files, schema):
        pending.append(batch)
        count += len(batch)
        while count >= block_size:
            table = pa.Table.from_batches(pending, schema=bare)
            yield table.slice(0, block_size)
            rest = table.slice(block_size)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending, schema=bare)
