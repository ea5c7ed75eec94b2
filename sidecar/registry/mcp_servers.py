"""The registry's MCP servers: their tools by id or name, discovery, refresh, expansion.

A part the `Registry` holds: it reads the registered tools through the same
`StoredTools` and keeps what is particular to servers that list tools of their own
(their discovery and the tools built for their members) out of the rest of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sidecar.errors import BadRequest, ToolNotFound
from sidecar.execution import Resolved
from sidecar.registry.definitions import AllowedTools, McpSpec, McpToolDefinition, StoredTool
from sidecar.registry.discovery import McpDiscovery, pick_member
from sidecar.registry.factory import Built, ToolFactory
from sidecar.registry.lru import LruCache
from sidecar.registry.references import InlineMcp, Registered, ToolReference
from sidecar.registry.stored_tools import StoredTools
from tools.base import FunctionDefinition, VariableValue

__all__ = ["BUILT_TOOLS_KEPT", "Expansion", "McpServers", "refuse_stdio"]

BUILT_TOOLS_KEPT = 512


@dataclass(frozen=True)
class Expansion:
    """What a model sees of a reference, and the reference that executes it."""

    definition: FunctionDefinition
    reference: ToolReference
    kind: str  # what runs it: "mcp", "function", "http", "code", a platform tool's name


class McpServers:
    """Registered and inline MCP servers: the tools they list, found, built and refreshed."""

    def __init__(
        self, tools: StoredTools, factory: ToolFactory, discovery: McpDiscovery | None
    ) -> None:
        self._tools = tools
        self._factory = factory
        self._discovery = discovery
        self._built_members: LruCache[tuple[str, int, str], Built] = LruCache(BUILT_TOOLS_KEPT)

    async def nested(self, ident: str, allowed: AllowedTools | None) -> Resolved:
        """`orq:mcp` by the id of one of a server's tools."""
        for stored in await self._tools.all():
            definition = stored.definition
            if isinstance(definition, McpToolDefinition) and any(
                entry.id == ident for entry in definition.mcp.tools
            ):
                return self.member(stored, ident, allowed)
        raise ToolNotFound(f"no MCP tool or server with id or key {ident!r}", param="tool")

    def member(
        self, stored: StoredTool, member: str | None, allowed: AllowedTools | None
    ) -> Resolved:
        """The runnable tool of one of a server's tools (its id or name)."""
        assert isinstance(stored.definition, McpToolDefinition)
        definition = stored.definition
        entry = pick_member(definition, member, allowed)
        built = self._built_members.get_or_make(
            (stored.id, stored.version, entry.id),
            lambda: self._factory.build_mcp(definition, entry),
        )
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
    ) -> list[Expansion] | None:
        """One entry per tool a server reference exposes; None for any other reference."""
        if isinstance(reference, InlineMcp):
            return await self._expand_inline(reference, variables)
        if not isinstance(reference, Registered) or reference.member is not None:
            return None
        stored = await self._tools.find(reference.ident)
        if stored is None or not isinstance(stored.definition, McpToolDefinition):
            return None
        stored = await self.discovered(stored, variables)
        assert isinstance(stored.definition, McpToolDefinition)
        key, allowed = stored.definition.key, reference.allowed
        return [
            Expansion(
                self.member(stored, entry.id, None).tool.definition,
                Registered(key, "mcp", entry.id),
                "mcp",
            )
            for entry in stored.definition.mcp.tools
            if allowed is None or allowed.admits(entry.name, read_only=entry.read_only)
        ]

    async def _expand_inline(
        self, reference: InlineMcp, variables: Mapping[str, VariableValue]
    ) -> list[Expansion]:
        definition = McpToolDefinition(type="mcp", key="inline", mcp=reference.spec)
        listed = await self._available().discover(definition, variables, stored=False)
        allowed = reference.allowed
        return [
            Expansion(
                FunctionDefinition(entry.name, entry.description, entry.input_schema),
                InlineMcp(reference.spec, entry.name, allowed),
                "mcp",
            )
            for entry in listed.mcp.tools
            if allowed is None or allowed.admits(entry.name, read_only=entry.read_only)
        ]

    async def refresh(
        self, ident: str, variables: Mapping[str, VariableValue] | None = None
    ) -> StoredTool:
        """List a registered MCP server's tools again; ids stay with the names they had."""
        current = await self._tools.get(ident)
        definition = current.definition
        if not isinstance(definition, McpToolDefinition):
            raise BadRequest(
                f"tool {ident!r} is a {definition.type} tool; only MCP servers are refreshed",
                param="tool_id",
            )
        listed = await self.discover(definition, variables or {}, previous=definition.mcp)
        updated = current.model_copy(
            update={
                "definition": listed,
                "updated": datetime.now(UTC),
                "version": current.version + 1,
            }
        )
        await self._tools.save_refreshed(updated, current)
        return updated

    async def discover(
        self,
        definition: McpToolDefinition,
        variables: Mapping[str, VariableValue],
        previous: McpSpec | None = None,
    ) -> McpToolDefinition:
        """The definition with the tools its server lists now."""
        return await self._available().discover(definition, variables, previous=previous)

    def _available(self) -> McpDiscovery:
        if self._discovery is None:
            raise BadRequest("MCP servers are not available here")
        return self._discovery


def refuse_stdio(definition: McpToolDefinition) -> None:
    """Only manifests (files the operator wrote) may start local processes."""
    if definition.mcp.connection_type == "stdio":
        raise BadRequest(
            "stdio MCP servers (local commands) can only be declared in manifest files",
            param="mcp.connection_type",
        )
