"""The tool registry store: the registry's database (`registry.sqlite3` or PostgreSQL).

    KeyTaken          another tool already has the key
    VersionConflict   the row is gone or was changed since it was read

The store keeps what it is given; encrypting header values is the registry's job.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from ulid import ULID

from sidecar.database import Database, Row, Schema, UniqueViolation
from sidecar.database.base import Params
from sidecar.registry.definitions import StoredTool, definition_adapter

__all__ = [
    "REGISTRY_SCHEMA",
    "KeyTaken",
    "ToolStore",
    "ToolVersion",
    "VersionConflict",
    "page_rows",
    "timestamp",
]

# One tuple of statements per schema version (tools, agents): never edit one released.
REGISTRY_SCHEMA = Schema(
    "registry",
    (
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
    ),
)
COLUMNS = "id, key, type, body, version, created, updated"
VERSION_COLUMNS = "tool_id, key, type, body, version, created, updated"
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
    """Registered tools, in the registry's database (SQLite file or PostgreSQL)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._parsed_rows: OrderedDict[Row, StoredTool] = OrderedDict()
        # Lookups by id or key, kept while the database is unchanged (see `_one`).
        self._lookups: OrderedDict[tuple[str, str], StoredTool | None] = OrderedDict()
        self._lookups_token: int | None = None

    async def insert(self, tool: StoredTool) -> None:
        """Add a new tool (and its first version); KeyTaken when its key is in use."""
        row = _to_row(tool)
        sql = f"INSERT INTO tools ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
        await self._versioned(sql, row, row)

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
        if await self._versioned(sql, params, row) == 0:
            raise VersionConflict(tool.id, expected_version)

    async def delete(self, tool_id: str) -> bool:
        """Remove a tool and its versions; whether there was one."""
        async with self.database.transaction() as tx:
            await tx.execute("DELETE FROM tool_versions WHERE tool_id = ?", (tool_id,))
            return await tx.execute("DELETE FROM tools WHERE id = ?", (tool_id,)) > 0

    async def versions(self, tool_id: str) -> list[ToolVersion]:
        """Every version of a tool, newest first."""
        sql = (
            f"SELECT id, {VERSION_COLUMNS} FROM tool_versions"  # noqa: S608
            " WHERE tool_id = ? ORDER BY version DESC"
        )
        rows = await self.database.fetch_all(sql, (tool_id,))
        return [ToolVersion(row[0], _from_row(row[1:])) for row in rows]

    async def page(
        self, *, limit: int, starting_after: str | None = None, ending_before: str | None = None
    ) -> tuple[list[StoredTool], bool]:
        """Up to `limit` tools newest first, after or before a cursor id, and whether more exist."""
        select = f"SELECT {COLUMNS} FROM tools"  # noqa: S608
        rows, has_more = await page_rows(
            self.database, select, limit, starting_after, ending_before
        )
        return [_from_row(row) for row in rows], has_more

    async def all(self) -> list[StoredTool]:
        """Every stored tool, newest first."""
        sql = f"SELECT {COLUMNS} FROM tools ORDER BY id DESC"  # noqa: S608
        return [_from_row(row) for row in await self.database.fetch_all(sql)]

    async def ping(self) -> None:
        """Run a trivial query; raises when the database cannot answer."""
        await self.database.ping()

    async def _one(self, column: str, value: str) -> StoredTool | None:
        """One tool by id or key; answered from memory while nobody wrote anything.

        The database's change token (SQLite's `data_version`, a read of shared memory
        that changes as soon as any connection commits) says when memory is stale. A
        database other replicas write (PostgreSQL) has none: every lookup is a query.
        """
        token = self.database.change_token()
        if token != self._lookups_token or token is None:
            self._lookups.clear()
            self._lookups_token = token
        lookup = (column, value)
        if lookup in self._lookups:
            self._lookups.move_to_end(lookup)
            return self._lookups[lookup]
        sql = f"SELECT {COLUMNS} FROM tools WHERE {column} = ?"  # noqa: S608
        row = await self.database.fetch_one(sql, (value,))
        found = None if row is None else self._parsed(row)
        if token is not None and self._lookups_token == token:  # unchanged while read
            self._lookups[lookup] = found
            if len(self._lookups) > PARSED_ROWS_KEPT:
                self._lookups.popitem(last=False)
        return found

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

    async def _versioned(self, sql: str, params: Params, row: Row) -> int:
        """Write a tool's row and, when it changed, a version record of it, together."""
        try:
            async with self.database.transaction() as tx:
                changed = await tx.execute(sql, params)
                if changed:
                    await tx.execute(
                        f"INSERT INTO tool_versions (id, {VERSION_COLUMNS})"  # noqa: S608
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (str(ULID()), *row),
                    )
                return changed
        except UniqueViolation as exc:
            if exc.table == "tools" and exc.columns == ("key",):
                raise KeyTaken(row[1]) from None
            raise


async def page_rows(
    database: Database,
    select: str,
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
) -> tuple[list[Row], bool]:
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
    rows = await database.fetch_all(sql, (*params, limit + 1))
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
