"""Workspace: the validated tables, rejects, portraits and artifact bundles of one deployment.

Everything is written atomically (write a temporary file beside the target, then rename), so a reader never
sees half a file and a killed job leaves the previous version in place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the permissions of any file this process creates
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(target: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def write_text_atomic(target: Path, text: str) -> Path:
    return atomic_write(target, lambda p: p.write_text(text, encoding="utf-8"))


def write_parquet_atomic(df: pd.DataFrame, target: Path) -> Path:
    return atomic_write(target, lambda p: df.to_parquet(p, index=False))


def write_csv_atomic(df: pd.DataFrame, target: Path) -> Path:
    # utf-8-sig so that a clerk opening the file in Excel sees Chinese, not mojibake
    return atomic_write(target, lambda p: df.to_csv(p, index=False, encoding="utf-8-sig"))


@dataclass(frozen=True)
class Workspace:
    """A deployment's folder: ``tables/`` (validated Parquet), ``rejects/``, ``portraits/``, ``bundles/``."""

    root: Path

    @classmethod
    def open(cls, root: str | Path) -> Workspace:
        ws = cls(Path(root).resolve())
        ws.root.mkdir(parents=True, exist_ok=True)
        return ws

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def rejects_dir(self) -> Path:
        return self.root / "rejects"

    @property
    def portraits_dir(self) -> Path:
        return self.root / "portraits"

    @property
    def bundles_dir(self) -> Path:
        return self.root / "bundles"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def table_path(self, name: str) -> Path:
        return self.tables_dir / f"{name}.parquet"

    def has_table(self, name: str) -> bool:
        return self.table_path(name).exists()

    def read_table(self, name: str) -> pd.DataFrame:
        path = self.table_path(name)
        if not path.exists():
            raise FileNotFoundError(f"workspace {self.root} has no table {name!r}; run `tdr ingest` first")
        return pd.read_parquet(path)

    def write_table(self, name: str, df: pd.DataFrame) -> Path:
        return write_parquet_atomic(df, self.table_path(name))

    def tables(self) -> list[str]:
        return sorted(p.stem for p in self.tables_dir.glob("*.parquet"))

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per validated table."""
        con = duckdb.connect()
        for name in self.tables():
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{self.table_path(name)}')")
        return con
