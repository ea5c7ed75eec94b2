"""One SQLite file of the state directory: one serialised connection, migrated at open.

The stores (tools, responses) keep their rows here. Work runs in a worker thread under
a lock, so the event loop never waits on the disk; the schema is versioned with
`PRAGMA user_version`, one tuple of statements per version.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

__all__ = ["BUSY_TIMEOUT_MS", "SqliteFile", "connect"]

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000


class SqliteFile:
    """A file, its migrations, and the one connection the service writes through."""

    def __init__(self, path: Path, migrations: Sequence[tuple[str, ...]], *, what: str) -> None:
        self.path = path
        self._migrations = tuple(migrations)
        self._what = what
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Connect, creating the file and bringing the schema up to date."""
        if self._conn is None:
            self._conn = await anyio.to_thread.run_sync(self._connect)

    async def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(self._locked(conn.close))

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in a worker thread, alone on the connection."""
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"the {self._what} is not open")
        return await anyio.to_thread.run_sync(self._locked(lambda: work(conn)))

    def run_here(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in the calling thread (a writer thread of its own), alone."""
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"the {self._what} is not open")
        return self._locked(lambda: work(conn))()

    def _locked(self, work: Callable[[], T]) -> Callable[[], T]:
        def call() -> T:
            with self._lock:
                return work()

        return call

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        conn = connect(self.path)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            (current,) = conn.execute("PRAGMA user_version").fetchone()
            self._check_known(current)
            for version, statements in enumerate(self._migrations[current:], start=current + 1):
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _check_known(self, version: int) -> None:
        if version > len(self._migrations):
            raise RuntimeError(
                f"{self._what} schema version {version} is newer than this sidecar knows "
                f"({len(self._migrations)}); upgrade the sidecar"
            )


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode that waits for a busy file instead of failing."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn
