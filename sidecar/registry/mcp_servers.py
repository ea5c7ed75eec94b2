"""The registry's MCP servers: their tools by id or name, discovery, refresh, expansion.

A mixin of `Registry`: it uses the registry's lookups and caches, and keeps what is
particular to servers that list tools of their own out of the rest of the registry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sidecar.errors import BadRequest, Conflict, ToolNotFound
from sidecar.registry.definitions import AllowedTools, McpSpec, McpToolDefinition, StoredTool
from sidecar.registry.discovery import McpDiscovery, pick_member
from sidecar.registry.factory import Built, ToolFactory
from sidecar.registry.references import InlineMcp, Registered, ToolReference
from sidecar.registry.store import ToolStore, VersionConflict
from tools.base import FunctionDefinition, Tool, VariableValue

__all__ = ["BUILT_TOOLS_KEPT", "McpServers", "Resolved", "refuse_stdio"]

BUILT_TOOLS_KEPT = 512


@dataclass(frozen=True)
class Resolved:
    """A tool ready to run, its kind, and the stored secrets it holds."""

    tool: Tool
    kind: str
    held_secrets: tuple[str, ...] = ()


class McpServers:
    """Registered MCP servers: the part of `Registry` that knows their tools."""

    _store: ToolStore
    _factory: ToolFactory
    _mcp: McpDiscovery | None
    _manifests_by_id: dict[str, StoredTool]
    _manifests_by_key: dict[str, StoredTool]
    _built_members: OrderedDict[tuple[str, int, str], Built]

    async def _find(self, ident: str) -> StoredTool | None:
        raise NotImplementedError

    async def get(self, ident: str) -> StoredTool:
        raise NotImplementedError

    async def all(self) -> list[StoredTool]:
        raise NotImplementedError

    async def resolve(
        self, reference: ToolReference, variables: Mapping[str, VariableValue] | None = None
    ) -> Resolved:
        raise NotImplementedError

    async def _nested(self, ident: str, allowed: AllowedTools | None) -> Resolved:
        """`orq:mcp` by the id of one of a server's tools."""
        for stored in await self.all():
            definition = stored.definition
            if isinstance(definition, McpToolDefinition) and any(
                entry.id == ident for entry in definition.mcp.tools
            ):
                return self._mcp_member(stored, ident, allowed)
        raise ToolNotFound(f"no MCP tool or server with id or key {ident!r}", param="tool")

    def _mcp_member(
        self, stored: StoredTool, member: str | None, allowed: AllowedTools | None
    ) -> Resolved:
        assert isinstance(stored.definition, McpToolDefinition)
        entry = pick_member(stored.definition, member, allowed)
        key = (stored.id, stored.version, entry.id)
        built = self._built_members.get(key)
        if built is None:
            built = self._factory.build_mcp(stored.definition, entry)
            self._built_members[key] = built
            if len(self._built_members) > BUILT_TOOLS_KEPT:
                self._built_members.popitem(last=False)
        return Resolved(built.tool, "mcp", built.held_secrets)

    async def discovered(
        self, stored: StoredTool, variables: Mapping[str, VariableValue]
    ) -> StoredTool:
        """A manifest MCP server that lists no tools, discovered now (once) with `variables`."""
        definition = stored.definition
        if not isinstance(definition, McpToolDefinition) or definition.mcp.tools:
            return stored
        if stored.source != "manifest":
            return stored
        return await self.refresh(stored.id, variables)

    async def expand(
        self, reference: ToolReference, variables: Mapping[str, VariableValue]
    ) -> list[tuple[FunctionDefinition, dict[str, Any]]]:
        """What a model should see for a reference: MCP servers give one entry per tool.

        Each definition comes with the `tools[]` entry that executes it.
        """
        if isinstance(reference, InlineMcp):
            return await self._expand_inline(reference, variables)
        if isinstance(reference, Registered) and reference.member is None:
            stored = await self._find(reference.ident)
            if stored is not None and isinstance(stored.definition, McpToolDefinition):
                stored = await self.discovered(stored, variables)
                assert isinstance(stored.definition, McpToolDefinition)
                allowed = reference.allowed
                return [
                    (
                        self._mcp_member(stored, entry.id, None).tool.definition,
                        {"type": "mcp", "key": stored.definition.key, "tool_id": entry.id},
                    )
                    for entry in stored.definition.mcp.tools
                    if allowed is None or allowed.admits(entry.name, read_only=entry.read_only)
                ]
        resolved = await self.resolve(reference, variables)
        return [(resolved.tool.definition, {})]

    async def _expand_inline(
        self, reference: InlineMcp, variables: Mapping[str, VariableValue]
    ) -> list[tuple[FunctionDefinition, dict[str, Any]]]:
        if self._mcp is None:
            raise BadRequest("MCP servers are not available here")
        definition = McpToolDefinition(type="mcp", key="inline", mcp=reference.spec)
        listed = await self._mcp.discover(definition, variables, stored=False)
        allowed = reference.allowed
        return [
            (
                FunctionDefinition(entry.name, entry.description, entry.input_schema),
                {"tool_name": entry.name},
            )
            for entry in listed.mcp.tools
            if allowed is None or allowed.admits(entry.name, read_only=entry.read_only)
        ]

    async def refresh(
        self, ident: str, variables: Mapping[str, VariableValue] | None = None
    ) -> StoredTool:
        """List a registered MCP server's tools again; ids stay with the names they had."""
        current = await self.get(ident)
        definition = current.definition
        if not isinstance(definition, McpToolDefinition):
            raise BadRequest(
                f"tool {ident!r} is a {definition.type} tool; only MCP servers are refreshed",
                param="tool_id",
            )
        listed = await self._discover(definition, variables or {}, previous=definition.mcp)
        updated = current.model_copy(
            update={
                "definition": listed,
                "updated": datetime.now(UTC),
                "version": current.version + 1,
            }
        )
        if current.source == "manifest":
            # Manifest tools live in memory; a refresh lasts until the service restarts.
            self._manifests_by_id[current.id] = updated
            self._manifests_by_key[definition.key] = updated
            return updated
        try:
            await self._store.replace(updated, expected_version=current.version)
        except VersionConflict:
            raise Conflict("the tool changed meanwhile; try again") from None
        return updated

    async def _discover(
        self,
        definition: McpToolDefinition,
        variables: Mapping[str, VariableValue],
        previous: McpSpec | None = None,
    ) -> McpToolDefinition:
        if self._mcp is None:
            raise BadRequest("MCP servers are not available here")
        return await self._mcp.discover(definition, variables, previous=previous)


def refuse_stdio(definition: McpToolDefinition) -> None:
    """Only manifests (files the operator wrote) may start local processes."""
    if definition.mcp.connection_type == "stdio":
        raise BadRequest(
            "stdio MCP servers (local commands) can only be declared in manifest files",
            param="mcp.connection_type",
        )
