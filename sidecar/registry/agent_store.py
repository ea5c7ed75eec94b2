"""Agents registered through the API, in the registry's database (table `agents`).

The table is part of the registry schema (`REGISTRY_SCHEMA`), beside the tools'.
"""

from __future__ import annotations

import json
from datetime import datetime

from sidecar.database import Database, Row, UniqueViolation
from sidecar.database.base import Params
from sidecar.registry.agent_definitions import AgentDefinition, StoredAgent
from sidecar.registry.store import KeyTaken, VersionConflict, page_rows, timestamp

__all__ = ["AgentStore"]

COLUMNS = "id, key, body, version, created, updated"


class AgentStore:
    """Registered agents: insert, read by id or key, page, replace, delete."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def insert(self, agent: StoredAgent) -> None:
        """Add a new agent; KeyTaken when its key is in use."""
        row = _to_row(agent)
        sql = f"INSERT INTO agents ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608
        await self._write(sql, row, agent.definition.key)

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
        if await self._write(sql, params, key) == 0:
            raise VersionConflict(agent.agent_id, expected_version)

    async def delete(self, agent_id: str) -> bool:
        """Remove an agent; whether there was one."""
        sql = "DELETE FROM agents WHERE id = ?"
        return await self.database.execute(sql, (agent_id,)) > 0

    async def page(
        self, *, limit: int, starting_after: str | None = None, ending_before: str | None = None
    ) -> tuple[list[StoredAgent], bool]:
        """Up to `limit` agents newest first, after or before a cursor id; whether more exist."""
        select = f"SELECT {COLUMNS} FROM agents"  # noqa: S608
        rows, has_more = await page_rows(
            self.database, select, limit, starting_after, ending_before
        )
        return [_from_row(row) for row in rows], has_more

    async def all(self) -> list[StoredAgent]:
        """Every stored agent, newest first."""
        sql = f"SELECT {COLUMNS} FROM agents ORDER BY id DESC"  # noqa: S608
        return [_from_row(row) for row in await self.database.fetch_all(sql)]

    async def _one(self, column: str, value: str) -> StoredAgent | None:
        sql = f"SELECT {COLUMNS} FROM agents WHERE {column} = ?"  # noqa: S608
        row = await self.database.fetch_one(sql, (value,))
        return None if row is None else _from_row(row)

    async def _write(self, sql: str, params: Params, key: str) -> int:
        try:
            return await self.database.execute(sql, params)
        except UniqueViolation as exc:
            if exc.table == "agents" and exc.columns == ("key",):
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
