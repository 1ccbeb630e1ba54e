"""The service's SQLite stores (tokens, events): one connection per server thread, opened once and kept.

Every store writes with `synchronous=FULL` in WAL mode, so a committed write is fsynced before the request that
made it is answered.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ThreadConnections:
    """Connections to one database file, one per thread (sqlite3 connections must stay in their thread)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self.transaction() as con:
            con.execute("PRAGMA journal_mode=WAL")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection inside a transaction: committed on leaving, rolled back on an error."""
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.db_path, timeout=10.0)
            # FULL: the WAL is fsynced at every commit, so a returned write survives power loss
            con.execute("PRAGMA synchronous=FULL")
            self._local.con = con
        with con:
            yield con
