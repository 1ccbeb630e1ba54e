"""Workspace: the validated tables, rejects, portraits and artifact bundles of one deployment.

Everything is written atomically (write a temporary file beside the target, then rename), so a reader never
sees half a file and a killed job leaves the previous version in place.

The tables of one ingest form a *version*, switched in together (see DESIGN.md "workspace versions")::

    WS/versions/000007/manifest.json         the version: tables, rows, parts, mode, changed teachers
    WS/versions/000007/ingest_report.json    what the ingest that made it accepted and rejected
    WS/versions/000007/tables/<t>.parquet/   one folder of Parquet parts per table
    WS/versions/000007/rejects/<t>.csv
    WS/current -> versions/000007            the one switch: an atomic rename of a symlink
    WS/tables, WS/rejects, WS/ingest_report.json, WS/manifest.json -> current/...   fixed links

An ingest writes a whole version into a staging folder, renames it into ``versions/``, then replaces the
``current`` link; a kill at any point leaves ``current`` on one complete version. ``Workspace.pinned()`` fixes
the version a long job (train, score) reads, so an ingest finishing meanwhile cannot mix two versions in it.
A workspace without ``current`` (made by hand or before versions) keeps its tables in ``WS/tables/``.

The portrait files a build writes (teachers, competencies, the build state and input digests) are switched in
together the same way (`portraits_update`)::

    WS/portraits.d/000003/                   one set of portrait files
    WS/portraits -> portraits.d/000003       the one switch

A bundle holds (as hard links) the portrait set it was made with, so a reader that pairs portraits with models
(scoring, the service) reads both from the bundle and is switched by the bundle's one switch
(``Workspace.portraits_from``; `recommender.artifacts.paired`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from data.stream import parquet_files


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


VERSIONS = "versions"
CURRENT = "current"
MANIFEST = "manifest.json"
REPORT = "ingest_report.json"
# names at the workspace's root that always show the current version
LINKED = ("tables", "rejects", REPORT, MANIFEST)
# versions kept besides the current one, so that a job pinned to the one before it can finish reading
KEEP_PREVIOUS = 1
_STAGING = ".staging-"
PORTRAITS = "portraits"
PORTRAIT_VERSIONS = "portraits.d"
# fault injection for tests/faults: the process kills itself (SIGKILL) at the named step of a commit
FAULT_ENV = "TDR_FAULT_AT"


def fault_point(step: str) -> None:
    """Die here, as a power cut would, when the environment names this step (tests/faults only)."""
    if os.environ.get(FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Workspace:
    """A deployment's folder: versioned ``tables/`` (validated Parquet) and ``rejects/``, ``portraits/``,
    ``bundles/``. ``version`` None reads whatever version is current at each call; see ``pinned``."""

    root: Path
    version: str | None = None
    # a folder of portrait files read instead of the current set (a bundle's own: recommender.artifacts.paired)
    portraits_from: Path | None = None

    @classmethod
    def open(cls, root: str | Path) -> Workspace:
        ws = cls(Path(root).resolve())
        ws.root.mkdir(parents=True, exist_ok=True)
        return ws

    def current_version(self) -> str | None:
        """The name of the current version, None for a workspace without versions."""
        link = self.root / CURRENT
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def pinned(self) -> Workspace:
        """This workspace with its tables read from the version current now, whatever ingests follow."""
        return replace(self, version=self.version or self.current_version())

    @property
    def version_dir(self) -> Path | None:
        version = self.version or self.current_version()
        return None if version is None else self.root / VERSIONS / version

    def _versioned(self) -> Path:
        """Where the version's folders are: the pinned version, else through the ``current`` link (resolved at
        each access), else the root of a workspace without versions."""
        if self.version:
            return self.root / VERSIONS / self.version
        current = self.root / CURRENT
        return current if current.is_symlink() else self.root

    @property
    def tables_dir(self) -> Path:
        return self._versioned() / "tables"

    @property
    def rejects_dir(self) -> Path:
        return self._versioned() / "rejects"

    @property
    def portraits_dir(self) -> Path:
        return self.portraits_from or self.root / PORTRAITS

    @property
    def bundles_dir(self) -> Path:
        return self.root / "bundles"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def manifest(self) -> dict[str, Any]:
        """The current (or pinned) version's manifest; {} for a workspace without versions."""
        folder = self.version_dir
        if folder is None:
            return {}
        return dict(json.loads((folder / MANIFEST).read_text(encoding="utf-8")))

    def table_path(self, name: str) -> Path:
        """The table's Parquet: a folder of parts (or, in a workspace made by hand, one file)."""
        return self.tables_dir / f"{name}.parquet"

    def table_files(self, name: str) -> list[Path]:
        """The table's part files; [] when the workspace lacks the table."""
        path = self.table_path(name)
        return parquet_files(path) if path.exists() else []

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
        return sorted(p.name.removesuffix(".parquet") for p in self.tables_dir.glob("*.parquet"))

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per validated table."""
        con = duckdb.connect()
        for name in self.tables():
            files = [str(p) for p in self.table_files(name)]
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({files!r})")
        return con


# ---------------------------------------------------------------------------------------------------- versions


@contextmanager
def ingest_lock(ws: Workspace) -> Iterator[None]:
    """One ingest at a time per workspace (an advisory lock the kernel drops when the process dies)."""
    with open(ws.root / ".ingest.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Staged:
    """A version being written: its future name and the staging folder that becomes it."""

    name: str
    folder: Path


def begin_version(ws: Workspace) -> Staged:
    """A fresh staging folder for the next version (left-overs of killed ingests are removed first). Call it
    under ``ingest_lock``."""
    versions = ws.root / VERSIONS
    versions.mkdir(exist_ok=True)
    current = ws.current_version()
    for old in versions.iterdir():
        # a staging folder, or a complete version that a killed ingest never switched to
        if old.name.startswith(_STAGING) or (current is None or old.name > current) and old.name.isdigit():
            shutil.rmtree(old, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=_STAGING, dir=versions))
    return Staged(_next_name(versions), folder)


def commit_version(ws: Workspace, staged: Staged) -> None:
    """Make the complete staged folder the current version, atomically; prune older versions.

    Before the ``current`` link is replaced, readers see the previous version whole; after it, the new one.
    """
    versions = ws.root / VERSIONS
    name, staging = staged.name, staged.folder
    fsync_tree(staging)
    fault_point("staged")
    os.replace(staging, versions / name)
    fault_point("renamed")
    _relink(ws.root, CURRENT, Path(VERSIONS) / name)
    _fsync_dir(ws.root)
    fault_point("switched")
    link_current(ws)
    _prune(versions, name)


def link_current(ws: Workspace) -> None:
    """Point the fixed root names (tables, rejects, the report, the manifest) into ``current``; a workspace
    from before versions has its old folders and report moved aside (its tables are already in a version)."""
    for name in LINKED:
        path = ws.root / name
        if path.is_symlink():
            continue
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        _relink(ws.root, name, Path(CURRENT) / name)


def _relink(root: Path, name: str, target: Path) -> None:
    """Make ROOT/NAME a link to `target` in one atomic rename (a new link beside it replaces it)."""
    tmp = root / f".{name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, root / name)


def _next_name(folder: Path) -> str:
    """The name of the next numbered version in `folder`."""
    return f"{max((int(p.name) for p in folder.iterdir() if p.name.isdigit()), default=0) + 1:06d}"


def _prune(folder: Path, current: str) -> None:
    """Remove the numbered versions in `folder` but `current` and the KEEP_PREVIOUS newest before it."""
    older = sorted(p.name for p in folder.iterdir() if p.name.isdigit() and p.name != current)
    for name in older[: len(older) - KEEP_PREVIOUS]:
        shutil.rmtree(folder / name, ignore_errors=True)


def _alive(pid: str) -> bool:
    """Whether the process `pid` (text, as found in a folder's name) is running."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def portraits_update(ws: Workspace) -> Iterator[Path]:
    """A staging folder holding the current portrait files (hard links) for the caller to write the new ones
    into, each file replaced by write-then-rename (which leaves the current set's file untouched). On a clean
    exit the folder becomes ``WS/portraits`` in one atomic replacement of that link, so a reader sees every
    portrait file of the old set or every one of the new; on an error the current set stays as it was. The set
    before is kept for readers still on it; staging folders of killed updates are swept by the next one, those of
    updates still running are left to them."""
    versions = ws.root / PORTRAIT_VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    for old in versions.glob(_STAGING + "*"):
        if not _alive(old.name.removeprefix(_STAGING).split("-")[0]):
            shutil.rmtree(old, ignore_errors=True)
    # the writer's pid in the name: a concurrent update's folder is left alone, a killed one's swept
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{os.getpid()}-", dir=versions))
    current = ws.root / PORTRAITS
    try:
        if current.is_dir():
            for path in current.iterdir():
                if path.is_file():
                    os.link(path, staging / path.name)
        yield staging
        fsync_tree(staging)
        if current.exists() and not current.is_symlink():
            # portraits written before they had versions: their folder becomes the set before (readers find
            # no portraits for the instant between this rename and the link below, once per workspace)
            os.replace(current, versions / _next_name(versions))
        name = _next_name(versions)
        os.replace(staging, versions / name)
        _relink(ws.root, PORTRAITS, Path(PORTRAIT_VERSIONS) / name)
        _fsync_dir(ws.root)
        _prune(versions, name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fsync_tree(folder: Path) -> None:
    """Flush a staged version to disk before it is switched to, so a power cut cannot expose empty files."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_dir(sub)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
