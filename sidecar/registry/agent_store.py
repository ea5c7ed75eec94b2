"""Agents registered through the API, in the registry's SQLite file (table `agents`).

The tool store opens and migrates the file; this store reads and writes its own table
through the same serialised connection.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from sidecar.registry.agent_definitions import AgentDefinition, StoredAgent
from sidecar.registry.store import KeyTaken, VersionConflict, page_rows, timestamp, transaction
from sidecar.sqlite_file import SqliteFile

__all__ = ["AgentStore"]

COLUMNS = "id, key, body, version, created, updated"
Row = tuple[str, str, str, int, str, str]


class AgentStore:
    """Registered agents: insert, read by id or key, page, replace, delete."""

    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    async def insert(self, agent: StoredAgent) -> None:
        """Add a new agent; KeyTaken when its key is in use."""
        row = _to_row(agent)
        sql = f"INSERT INTO agents ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608
        await self._file.run(lambda conn: _write(conn, sql, row, agent.definition.key))

    async def get(self, agent_id: str) -> StoredAgent | None:
        """The agent with this bare ULID, if any."""
        return await self._one("id", agent_id)

    async def get_by_key(self, key: str) -> StoredAgent | None:
        """The agent with this key, if any."""
        return await self._one("key", key)

    async def replace(self, agent: StoredAgent, *, expected_version: int) -> None:
        """Overwrite an agent still at `expected_version`; VersionConflict or KeyTaken otherwise."""
        _, key, body, version, created, updated = _to_row(agent)
        sql = (
            "UPDATE agents SET key = ?, body = ?, version = ?, created = ?, updated = ?"
            " WHERE id = ? AND version = ?"
        )
        params = (key, body, version, created, updated, agent.id, expected_version)
        changed = await self._file.run(lambda conn: _write(conn, sql, params, key))
        if changed == 0:
            raise VersionConflict(agent.agent_id, expected_version)

    async def delete(self, agent_id: str) -> bool:
        """Remove an agent; whether there was one."""
        sql = "DELETE FROM agents WHERE id = ?"
        return await self._file.run(lambda conn: conn.execute(sql, (agent_id,)).rowcount) > 0

    async def page(
        self, *, limit: int, starting_after: str | None = None, ending_before: str | None = None
    ) -> tuple[list[StoredAgent], bool]:
        """Up to `limit` agents newest first, after or before a cursor id; whether more exist."""
        select = f"SELECT {COLUMNS} FROM agents"  # noqa: S608
        rows, has_more = await self._file.run(
            lambda conn: page_rows(conn, select, limit, starting_after, ending_before)
        )
        return [_from_row(row) for row in rows], has_more

    async def all(self) -> list[StoredAgent]:
        """Every stored agent, newest first."""
        sql = f"SELECT {COLUMNS} FROM agents ORDER BY id DESC"  # noqa: S608
        rows: list[Row] = await self._file.run(lambda conn: conn.execute(sql).fetchall())
        return [_from_row(row) for row in rows]

    async def _one(self, column: str, value: str) -> StoredAgent | None:
        sql = f"SELECT {COLUMNS} FROM agents WHERE {column} = ?"  # noqa: S608
        row: Row | None = await self._file.run(lambda conn: conn.execute(sql, (value,)).fetchone())
        return None if row is None else _from_row(row)


def _write(conn: sqlite3.Connection, sql: str, params: tuple[object, ...], key: str) -> int:
    try:
        with transaction(conn):
            return int(conn.execute(sql, params).rowcount)
    except sqlite3.IntegrityError as exc:
        if "agents.key" in str(exc):
            raise KeyTaken(key, "agent") from None
        raise


def _to_row(agent: StoredAgent) -> Row:
    body = json.dumps(
        agent.definition.model_dump(mode="json", exclude_none=True), separators=(",", ":")
    )
    return (
        agent.id,
        agent.definition.key,
        body,
        agent.version,
        timestamp(agent.created),
        timestamp(agent.updated),
    )


def _from_row(row: Row) -> StoredAgent:
    agent_id, _key, body, version, created, updated = row
    return StoredAgent(
        id=agent_id,
        definition=AgentDefinition.model_validate(json.loads(body)),
        created=datetime.fromisoformat(created),
        updated=datetime.fromisoformat(updated),
        version=version,
        source="api",
    )
