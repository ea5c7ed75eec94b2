"""The SQLite tool registry store: the state directory's `registry.sqlite3`.

    KeyTaken          another tool already has the key
    VersionConflict   the row is gone or was changed since it was read

The store keeps what it is given; encrypting header values is the registry's job.
"""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio.to_thread
from ulid import ULID

from sidecar.registry.definitions import StoredTool, definition_adapter
from sidecar.sqlite_file import SqliteFile, connect

__all__ = [
    "KeyTaken",
    "ToolStore",
    "ToolVersion",
    "VersionConflict",
    "page_rows",
    "timestamp",
    "transaction",
]

T = TypeVar("T")

# One tuple of statements per schema version; PRAGMA user_version counts those applied.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE tools (
            id TEXT PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            body TEXT NOT NULL,
            version INTEGER NOT NULL,
            created TEXT NOT NULL,
            updated TEXT NOT NULL
        )""",
    ),
    (
        # One row per change of a registered tool: the tool as it was at that version.
        """CREATE TABLE tool_versions (
            id TEXT PRIMARY KEY,
            tool_id TEXT NOT NULL,
            key TEXT NOT NULL,
            type TEXT NOT NULL,
            body TEXT NOT NULL,
            version INTEGER NOT NULL,
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            UNIQUE (tool_id, version)
        )""",
    ),
    (
        # Agents registered through the API (sidecar.registry.agent_store).
        """CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            body TEXT NOT NULL,
            version INTEGER NOT NULL,
            created TEXT NOT NULL,
            updated TEXT NOT NULL
        )""",
    ),
)
COLUMNS = "id, key, type, body, version, created, updated"
Row = tuple[str, str, str, str, int, str, str]
PARSED_ROWS_KEPT = 256


class KeyTaken(Exception):
    """Another tool (or agent) already has this key."""

    def __init__(self, key: str, what: str = "tool") -> None:
        super().__init__(f"a {what} with key {key!r} already exists")
        self.key = key


class VersionConflict(Exception):
    """The tool (or agent) is gone or changed since the expected version was read."""

    def __init__(self, tool_id: str, expected_version: int) -> None:
        super().__init__(f"{tool_id} is no longer at version {expected_version}")
        self.tool_id = tool_id
        self.expected_version = expected_version


class ToolStore:
    """Registered tools in one SQLite file, reached through one serialised connection."""

    def __init__(self, path: Path) -> None:
        self._file = SqliteFile(path, MIGRATIONS, what="tool store")
        self._parsed_rows: OrderedDict[Row, StoredTool] = OrderedDict()
        # Lookups by id or key, kept while the database is unchanged (see `_one`).
        self._watch: sqlite3.Connection | None = None
        self._lookups: OrderedDict[tuple[str, str], StoredTool | None] = OrderedDict()
        self._lookups_version = -1

    async def __aenter__(self) -> ToolStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect, creating the file and bringing the schema up to date."""
        await self._file.open()
        if self._watch is None:
            self._watch = await anyio.to_thread.run_sync(connect, self._file.path)

    @property
    def file(self) -> SqliteFile:
        """The registry's SQLite file, which the agent store shares."""
        return self._file

    async def close(self) -> None:
        """Close the connections; closing twice is harmless."""
        watch, self._watch = self._watch, None
        if watch is not None:
            await anyio.to_thread.run_sync(watch.close)
        await self._file.close()

    async def insert(self, tool: StoredTool) -> None:
        """Add a new tool (and its first version); KeyTaken when its key is in use."""
        row = _to_row(tool)
        sql = f"INSERT INTO tools ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
        await self._run(lambda conn: _versioned(conn, sql, row, row))

    async def get(self, tool_id: str) -> StoredTool | None:
        """The tool with this bare ULID, if any."""
        return await self._one("id", tool_id)

    async def get_by_key(self, key: str) -> StoredTool | None:
        """The tool with this key, if any."""
        return await self._one("key", key)

    async def replace(self, tool: StoredTool, *, expected_version: int) -> None:
        """Overwrite a tool still at `expected_version`; VersionConflict or KeyTaken otherwise."""
        row = _to_row(tool)
        _, key, type_, body, version, created, updated = row
        sql = (
            "UPDATE tools SET key = ?, type = ?, body = ?, version = ?, created = ?, updated = ?"
            " WHERE id = ? AND version = ?"
        )
        params = (key, type_, body, version, created, updated, tool.id, expected_version)
        changed = await self._run(lambda conn: _versioned(conn, sql, params, row))
        if changed == 0:
            raise VersionConflict(tool.id, expected_version)

    async def delete(self, tool_id: str) -> bool:
        """Remove a tool and its versions; whether there was one."""

        def remove(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                conn.execute("DELETE FROM tool_versions WHERE tool_id = ?", (tool_id,))
                return int(conn.execute("DELETE FROM tools WHERE id = ?", (tool_id,)).rowcount)

        return await self._run(remove) > 0

    async def versions(self, tool_id: str) -> list[ToolVersion]:
        """Every version of a tool, newest first."""
        sql = (
            f"SELECT id, {COLUMNS.replace('id, ', 'tool_id, ', 1)} FROM tool_versions"  # noqa: S608
            " WHERE tool_id = ? ORDER BY version DESC"
        )
        rows = await self._run(lambda conn: conn.execute(sql, (tool_id,)).fetchall())
        return [ToolVersion(row[0], _from_row(row[1:])) for row in rows]

    async def page(
        self, *, limit: int, starting_after: str | None = None, ending_before: str | None = None
    ) -> tuple[list[StoredTool], bool]:
        """Up to `limit` tools newest first, after or before a cursor id, and whether more exist."""
        select = f"SELECT {COLUMNS} FROM tools"  # noqa: S608
        rows, has_more = await self._file.run(
            lambda conn: page_rows(conn, select, limit, starting_after, ending_before)
        )
        return [_from_row(row) for row in rows], has_more

    async def all(self) -> list[StoredTool]:
        """Every stored tool, newest first."""
        sql = f"SELECT {COLUMNS} FROM tools ORDER BY id DESC"  # noqa: S608
        rows: list[Row] = await self._run(lambda conn: conn.execute(sql).fetchall())
        return [_from_row(row) for row in rows]

    async def ping(self) -> None:
        """Run a trivial query; raises when the database cannot answer."""
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def _one(self, column: str, value: str) -> StoredTool | None:
        """One tool by id or key; answered from memory while no connection wrote anything.

        Every lookup asks SQLite's `data_version`, which changes as soon as any other
        connection (this store's writer, another process) commits: a read of shared
        memory, cheap enough for the event loop, unlike a query through a thread.
        """
        version = self._data_version()
        if version != self._lookups_version:
            self._lookups.clear()
            self._lookups_version = version
        lookup = (column, value)
        if lookup in self._lookups:
            self._lookups.move_to_end(lookup)
            return self._lookups[lookup]
        sql = f"SELECT {COLUMNS} FROM tools WHERE {column} = ?"  # noqa: S608
        row: Row | None = await self._run(lambda conn: conn.execute(sql, (value,)).fetchone())
        found = None if row is None else self._parsed(row)
        if self._lookups_version == version:  # nothing changed while the row was read
            self._lookups[lookup] = found
            if len(self._lookups) > PARSED_ROWS_KEPT:
                self._lookups.popitem(last=False)
        return found

    def _data_version(self) -> int:
        watch = self._watch
        if watch is None:
            raise RuntimeError("the tool store is not open")
        (version,) = watch.execute("PRAGMA data_version").fetchone()
        return int(version)

    def _parsed(self, row: Row) -> StoredTool:
        """The tool of a row; a row read before (same body and version) is not parsed again."""
        found = self._parsed_rows.get(row)
        if found is None:
            found = _from_row(row)
            self._parsed_rows[row] = found
            if len(self._parsed_rows) > PARSED_ROWS_KEPT:
                self._parsed_rows.popitem(last=False)
        else:
            self._parsed_rows.move_to_end(row)
        return found

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._file.run(work)


def page_rows(
    conn: sqlite3.Connection,
    select: str,
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
) -> tuple[list[Any], bool]:
    """Up to `limit` rows of `select` newest first (by ULID id), after or before a cursor id,
    and whether more exist."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if starting_after is not None and ending_before is not None:
        raise ValueError("starting_after and ending_before cannot be combined")
    params: tuple[str, ...]
    if ending_before is not None:
        sql, params = f"{select} WHERE id > ? ORDER BY id ASC LIMIT ?", (ending_before,)
    elif starting_after is not None:
        sql, params = f"{select} WHERE id < ? ORDER BY id DESC LIMIT ?", (starting_after,)
    else:
        sql, params = f"{select} ORDER BY id DESC LIMIT ?", ()
    rows = conn.execute(sql, (*params, limit + 1)).fetchall()
    has_more = len(rows) > limit
    rows = rows[:limit]
    if ending_before is not None:
        rows.reverse()
    return rows, has_more


@dataclass(frozen=True)
class ToolVersion:
    """A tool as it was at one of its versions, under the version's own id."""

    id: str
    tool: StoredTool


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _versioned(conn: sqlite3.Connection, sql: str, params: tuple[object, ...], row: Row) -> int:
    """Write a tool's row and, when it changed, a version record of it, together."""
    with transaction(conn):
        changed = _write(conn, sql, params, row[1])
        if changed:
            conn.execute(
                f"INSERT INTO tool_versions (id, {COLUMNS.replace('id, ', 'tool_id, ', 1)})"  # noqa: S608
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (str(ULID()), *row),
            )
    return changed


def _write(conn: sqlite3.Connection, sql: str, params: tuple[object, ...], key: str) -> int:
    try:
        return conn.execute(sql, params).rowcount
    except sqlite3.IntegrityError as exc:
        if "tools.key" in str(exc):
            raise KeyTaken(key) from None
        raise


def timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("stored timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat()


def _to_row(tool: StoredTool) -> Row:
    body = json.dumps(tool.definition.model_dump(mode="json"), separators=(",", ":"))
    return (
        tool.id,
        tool.definition.key,
        tool.definition.type,
        body,
        tool.version,
        timestamp(tool.created),
        timestamp(tool.updated),
    )


def _from_row(row: Row) -> StoredTool:
    tool_id, _key, _type, body, version, created, updated = row
    return StoredTool(
        id=tool_id,
        definition=definition_adapter.validate_python(json.loads(body)),
        created=datetime.fromisoformat(created),
        updated=datetime.fromisoformat(updated),
        version=version,
        source="api",
    )
