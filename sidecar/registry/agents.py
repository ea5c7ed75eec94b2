"""The agents: manifest agents (in memory, read-only) and API-registered ones (the store).

An agent's tool entries are checked when it is registered: a platform tool must exist,
a registered tool must exist with the type the entry names (an MCP server must list
the `tool_id` asked for), and the entry is completed with the tool's key and id. A
manifest agent may name a tool that is registered through the API later: that is
logged at start and checked again when the agent runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ulid import ULID

from sidecar.errors import BadRequest, Conflict, ManifestError, NotFound, SidecarError
from sidecar.logs import get_logger
from sidecar.registry.agent_definitions import (
    PLATFORM_TOOL_TYPES,
    AgentDefinition,
    AgentTool,
    StoredAgent,
    parse_agent,
    parse_agent_id,
)
from sidecar.registry.agent_store import AgentStore
from sidecar.registry.definitions import McpToolDefinition
from sidecar.registry.paging import merged_page
from sidecar.registry.registry import Registry
from sidecar.registry.store import KeyTaken, VersionConflict

__all__ = ["AgentNotFound", "Agents"]

log = get_logger("sidecar.agents")


class AgentNotFound(NotFound):
    code = "agent_not_found"


class Agents:
    """Finds, lists and manages agents."""

    def __init__(
        self, store: AgentStore, registry: Registry, manifest_agents: Sequence[StoredAgent] = ()
    ) -> None:
        self._store = store
        self._registry = registry
        self._manifests_by_id = {agent.id: agent for agent in manifest_agents}
        self._manifests_by_key = {agent.definition.key: agent for agent in manifest_agents}

    async def check_manifests(self) -> None:
        """Log each manifest agent's tool that is not registered (yet)."""
        for agent in self._manifests_by_id.values():
            for index, tool in enumerate(agent.definition.settings.tools):
                try:
                    await self._checked_tool(tool, f"settings.tools.{index}")
                except SidecarError as exc:
                    log.warning(
                        "agents.tool_unknown", agent=agent.definition.key, error=exc.message
                    )

    async def find(self, ident: str) -> StoredAgent | None:
        """The agent `ident` (`agent_<ULID>`, a bare ULID, or a key) names, or None."""
        ulid = parse_agent_id(ident)
        if ulid is not None:
            found = self._manifests_by_id.get(ulid) or await self._store.get(ulid)
            if found is not None:
                return found
        return self._manifests_by_key.get(ident) or await self._store.get_by_key(ident)

    async def get(self, ident: str, *, param: str = "agent_key") -> StoredAgent:
        """The agent `ident` names; `AgentNotFound` when there is none."""
        found = await self.find(ident)
        if found is None:
            raise AgentNotFound(f"no agent with key or id {ident!r}", param=param)
        return found

    def manifests(self) -> list[StoredAgent]:
        """The manifest agents."""
        return list(self._manifests_by_id.values())

    async def all(self) -> list[StoredAgent]:
        """Every agent, manifests first."""
        return [*self._manifests_by_id.values(), *await self._store.all()]

    async def page(
        self, *, limit: int, starting_after: str | None, ending_before: str | None
    ) -> tuple[list[StoredAgent], bool]:
        """Newest first, manifests and stored agents merged; cursors are agent ids or keys."""
        after = await self._cursor(starting_after, "starting_after")
        before = await self._cursor(ending_before, "ending_before")
        stored, more = await self._store.page(
            limit=limit, starting_after=after, ending_before=before
        )
        return merged_page(stored, more, self.manifests(), limit=limit, after=after, before=before)

    async def create(self, body: Mapping[str, Any]) -> StoredAgent:
        """Register an agent; its key must be free and its tools must exist."""
        definition = await self._checked(parse_agent(dict(body)))
        if definition.key in self._manifests_by_key:
            raise Conflict(f"key {definition.key!r} is taken by a manifest agent", param="key")
        now = datetime.now(UTC)
        agent = StoredAgent(id=str(ULID()), definition=definition, created=now, updated=now)
        try:
            await self._store.insert(agent)
        except KeyTaken:
            raise Conflict(f"an agent with key {definition.key!r} exists", param="key") from None
        return agent

    async def update(self, ident: str, changes: Mapping[str, Any]) -> StoredAgent:
        """Apply a PATCH: top-level fields replace the stored ones (`settings` merges)."""
        current = self._writable(await self.get(ident))
        body = current.definition.model_dump(mode="json", exclude_none=True)
        merged = {**body, **changes}
        if isinstance(changes.get("settings"), dict):
            merged["settings"] = {**body["settings"], **changes["settings"]}
        definition = await self._checked(parse_agent(merged))
        if definition.key != current.definition.key and definition.key in self._manifests_by_key:
            raise Conflict(f"key {definition.key!r} is taken by a manifest agent", param="key")
        updated = current.model_copy(
            update={
                "definition": definition,
                "updated": datetime.now(UTC),
                "version": current.version + 1,
            }
        )
        try:
            await self._store.replace(updated, expected_version=current.version)
        except KeyTaken:
            raise Conflict(f"an agent with key {definition.key!r} exists", param="key") from None
        except VersionConflict:
            raise Conflict("the agent changed meanwhile; fetch it and try again") from None
        return updated

    async def delete(self, ident: str) -> StoredAgent:
        """Remove an agent registered through the API."""
        current = self._writable(await self.get(ident))
        await self._store.delete(current.id)
        return current

    async def _checked(self, definition: AgentDefinition) -> AgentDefinition:
        tools = [
            await self._checked_tool(tool, f"settings.tools.{index}")
            for index, tool in enumerate(definition.settings.tools)
        ]
        settings = definition.settings.model_copy(update={"tools": tools})
        return definition.model_copy(update={"settings": settings})

    async def _checked_tool(self, tool: AgentTool, param: str) -> AgentTool:
        """The entry, completed with the registered tool's key and id; it must exist."""
        if tool.type in PLATFORM_TOOL_TYPES:
            if tool.type not in self._registry.builtins:
                raise _invalid(f"{param}: platform tool {tool.type!r} is not available", param)
            return tool
        found = await self._registry.find(tool.ident)
        if found is None:
            raise _invalid(f"{param}: no registered tool with key or id {tool.ident!r}", param)
        definition = found.definition
        if definition.type != tool.type:
            raise _invalid(
                f"{param}: tool {tool.ident!r} is a {definition.type} tool, not {tool.type}", param
            )
        if tool.tool_id and isinstance(definition, McpToolDefinition):
            listed = definition.mcp.tools
            if listed and not any(tool.tool_id in (entry.id, entry.name) for entry in listed):
                raise _invalid(
                    f"{param}: MCP server {definition.key!r} has no tool {tool.tool_id!r}",
                    f"{param}.tool_id",
                )
        return tool.model_copy(update={"key": definition.key, "id": found.tool_id})

    async def _cursor(self, ident: str | None, param: str) -> str | None:
        if ident is None:
            return None
        ulid = parse_agent_id(ident)
        if ulid is not None:
            return ulid
        found = await self.find(ident)
        if found is None:
            raise BadRequest(
                f"{param} {ident!r} is neither an agent id nor a known key", param=param
            )
        return found.id

    def _writable(self, agent: StoredAgent) -> StoredAgent:
        if agent.source == "manifest":
            raise Conflict(
                f"agent {agent.definition.key!r} comes from a manifest file; edit the file instead",
                code="read_only_agent",
            )
        return agent


def _invalid(message: str, param: str) -> ManifestError:
    return ManifestError(message, param=param, code="invalid_agent_definition")
