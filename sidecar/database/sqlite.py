"""The embedded backend: one SQLite file of the state directory per schema.

One connection does the work, in worker threads, one statement or transaction at a
time (the event loop never waits on the disk); a second connection only reads
`PRAGMA data_version`, which changes whenever any connection commits, so a store can
keep what it read until then. The schema version is `PRAGMA user_version`.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Literal, TypeVar

import anyio
import anyio.to_thread

from sidecar.database.base import OpenedInBlock, Params, Row, Schema, UniqueViolation
from sidecar.errors import StoreUnavailable

__all__ = ["BUSY_TIMEOUT_MS", "SqliteDatabase", "connect"]

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000
_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)")


class SqliteDatabase(OpenedInBlock):
    """A file, its schema's migrations, and the one connection the service writes through."""

    dialect: Literal["sqlite"] = "sqlite"
    shared = False

    def __init__(self, path: Path, schema: Schema) -> None:
        self.path = path
        self.schema = schema
        self._lock = threading.Lock()
        self._turn = anyio.Lock()  # one statement or transaction at a time on `_conn`
        self._conn: sqlite3.Connection | None = None
        self._watch: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Connect, creating the file and bringing the schema up to date."""
        if self._conn is None:
            with _mapped(self.path):
                self._conn = await anyio.to_thread.run_sync(self._connect)
                self._watch = await anyio.to_thread.run_sync(connect, self.path)

    async def migrate(self) -> dict[str, tuple[int, int]]:
        """Open (which migrates); each schema's version before and after."""
        before = await anyio.to_thread.run_sync(_user_version, self.path)
        await self.open()
        return {self.schema.name: (before, self.schema.version)}

    async def close(self) -> None:
        """Close the connections; closing twice is harmless."""
        conn, self._conn = self._conn, None
        watch, self._watch = self._watch, None
        if watch is not None:
            await anyio.to_thread.run_sync(watch.close)
        if conn is not None:
            await anyio.to_thread.run_sync(self._locked(conn.close))

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = await self._alone(lambda conn: conn.execute(sql, params).fetchone())
        return row

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._alone(lambda conn: conn.execute(sql, params).fetchall())

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._alone(lambda conn: conn.execute(sql, params).rowcount)

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            with _transaction(conn, "BEGIN"):
                conn.executemany(sql, rows)

        await self._alone(write)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteTransaction]:
        async with self._turn:
            await self._run(lambda conn: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield _SqliteTransaction(self)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._run(lambda conn: conn.execute("ROLLBACK"))
                raise
            await self._run(lambda conn: conn.execute("COMMIT"))

    def change_token(self) -> int:
        watch = self._watch
        if watch is None:
            raise RuntimeError(f"the {self.schema.name} database is not open")
        (version,) = watch.execute("PRAGMA data_version").fetchone()
        return int(version)

    async def ping(self) -> None:
        await self.fetch_one("SELECT 1")

    def describe(self) -> str:
        return str(self.path)

    async def _alone(self, work: Callable[[sqlite3.Connection], T]) -> T:
        async with self._turn:
            return await self._run(work)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"the {self.schema.name} database is not open")
        with _mapped(self.path):
            return await anyio.to_thread.run_sync(self._locked(lambda: work(conn)))

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
        with _transaction(conn, "BEGIN IMMEDIATE"):
            (current,) = conn.execute("PRAGMA user_version").fetchone()
            self.schema.check_known(current)
            migrations = self.schema.migrations[current:]
            for version, statements in enumerate(migrations, start=current + 1):
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")


class _SqliteTransaction:
    def __init__(self, database: SqliteDatabase) -> None:
        self._database = database

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._database._run(lambda conn: conn.execute(sql, params).rowcount)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._database._run(lambda conn: conn.execute(sql, params).fetchall())


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode that waits for a busy file instead of failing."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _user_version(path: Path) -> int:
    if not path.exists():
        return 0
    conn = connect(path)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        return int(version)
    finally:
        conn.close()


@contextmanager
def _transaction(conn: sqlite3.Connection, begin: str) -> Iterator[None]:
    conn.execute(begin)
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def _mapped(path: Path) -> Iterator[None]:
    """SQLite's failures as the stores know them."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        found = _UNIQUE.match(str(exc))
        if found is None:
            raise
        columns = [name.strip() for name in found.group(1).split(",")]
        table = columns[0].split(".", 1)[0]
        raise UniqueViolation(table, tuple(c.split(".", 1)[-1] for c in columns)) from None
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"the database {path.name} cannot be used now: {exc}") from exc
