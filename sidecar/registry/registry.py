"""The tool registry: platform tools, manifest tools and API-registered tools in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ulid import ULID

from sidecar.errors import BadRequest, Conflict, ManifestError, ToolNotFound
from sidecar.execution import Resolved
from sidecar.registry.definitions import (
    CodeToolDefinition,
    HttpToolDefinition,
    McpToolDefinition,
    StoredTool,
    ToolDefinition,
    parse_definition,
    parse_tool_id,
)
from sidecar.registry.discovery import McpDiscovery
from sidecar.registry.factory import Built, ToolFactory
from sidecar.registry.lru import LruCache
from sidecar.registry.mcp_servers import BUILT_TOOLS_KEPT, Expansion, McpServers, refuse_stdio
from sidecar.registry.paging import merged_page
from sidecar.registry.references import Builtin, Inline, InlineMcp, Registered, ToolReference
from sidecar.registry.store import KeyTaken, ToolStore, ToolVersion, VersionConflict
from sidecar.registry.stored_tools import StoredTools
from tools.base import CodeRunner, Tool, VariableValue

__all__ = ["Expansion", "Page", "Registry"]


@dataclass(frozen=True)
class Page:
    """One page of the tool list."""

    tools: list[StoredTool]
    has_more: bool


class Registry:
    """Looks tools up for execution and manages the registered ones."""

    def __init__(
        self,
        *,
        store: ToolStore,
        factory: ToolFactory,
        builtins: Mapping[str, Tool],
        manifest_tools: Sequence[StoredTool] = (),
        code: CodeRunner | None = None,
        mcp: McpDiscovery | None = None,
        platform_secrets: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self._code = code
        self._factory = factory
        self._builtins = dict(builtins)
        # Secrets a platform tool holds from the service's settings (a search backend's
        # key): redacted from every call of that tool.
        self._platform_secrets = dict(platform_secrets or {})
        self._tools = StoredTools(store, manifest_tools)
        self._built: LruCache[tuple[str, int], Built] = LruCache(BUILT_TOOLS_KEPT)
        self.mcp_servers = McpServers(self._tools, factory, mcp)

    @property
    def builtins(self) -> Mapping[str, Tool]:
        """The platform tools, by name."""
        return self._builtins

    async def resolve(
        self, reference: ToolReference, variables: Mapping[str, VariableValue] | None = None
    ) -> Resolved:
        """The runnable tool a reference names; `ToolNotFound` when there is none.

        `variables` (the call's) are only needed to discover a manifest MCP server
        that lists no tools, on its first use.
        """
        match reference:
            case Builtin(name):
                return self._builtin(name)
            case Inline(definition):
                built = self._factory.build(definition, stored=False)
                return Resolved(built.tool, definition.type, built.held_secrets)
            case InlineMcp(spec, member, allowed):
                if member is None:
                    raise BadRequest(
                        "an inline MCP server reference needs 'tool_name' to be executed",
                        param="tool.tool_name",
                    )
                if allowed is not None and not allowed.admits(member, read_only=True):
                    raise ToolNotFound(
                        f"tool {member!r} is not allowed by allowed_tools", param="tool"
                    )
                built = self._factory.build_inline_mcp(spec, member, allowed)
                return Resolved(built.tool, "mcp", built.held_secrets)
            case Registered(ident, kind, member, allowed):
                stored = await self._tools.find(ident)
                if stored is None and kind is None and ident in self._builtins:
                    return self._builtin(ident)
                if stored is None and kind == "mcp":
                    return await self.mcp_servers.nested(ident, allowed)
                if stored is None:
                    raise ToolNotFound(f"no tool with id or key {ident!r}", param="tool")
                if kind is not None and stored.definition.type != kind:
                    raise ToolNotFound(
                        f"tool {ident!r} is a {stored.definition.type} tool, not {kind}",
                        param="tool",
                    )
                if isinstance(stored.definition, McpToolDefinition):
                    stored = await self.mcp_servers.discovered(stored, variables or {})
                    return self.mcp_servers.member(stored, member, allowed)
                # The row is read on every call (another replica may have changed it);
                # the tool is built again only when its version did.
                definition = stored.definition
                built = self._built.get_or_make(
                    (stored.id, stored.version), lambda: self._factory.build(definition)
                )
                return Resolved(built.tool, definition.type, built.held_secrets)

    async def expand(
        self, reference: ToolReference, variables: Mapping[str, VariableValue]
    ) -> list[Expansion]:
        """What a model should see for a reference: an MCP server gives one entry per tool.

        Each definition comes with the reference that executes it.
        """
        servers = await self.mcp_servers.expand(reference, variables)
        if servers is not None:
            return servers
        resolved = await self.resolve(reference, variables)
        return [Expansion(resolved.tool.definition, reference, resolved.kind)]

    def _builtin(self, name: str) -> Resolved:
        tool = self._builtins.get(name)
        if tool is None:
            known = ", ".join(sorted(self._builtins))
            raise ToolNotFound(f"unknown platform tool {name!r} (available: {known})", param="tool")
        return Resolved(tool, name, self._platform_secrets.get(name, ()))

    async def get(self, ident: str) -> StoredTool:
        """A registered tool by `tool_<ULID>`, bare ULID or key."""
        return await self._tools.get(ident)

    async def find(self, ident: str) -> StoredTool | None:
        """A registered tool by `tool_<ULID>`, bare ULID or key, or None."""
        return await self._tools.find(ident)

    async def all(self) -> list[StoredTool]:
        """Every registered tool (manifests first), for listings and the MCP face."""
        return await self._tools.all()

    async def versions(self, ident: str) -> list[ToolVersion]:
        """A tool's versions, newest first (a manifest tool has only the one it is at)."""
        stored = await self.get(ident)
        if stored.source == "manifest":
            return [ToolVersion(stored.id, stored)]
        return await self._tools.store.versions(stored.id)

    async def refresh(
        self, ident: str, variables: Mapping[str, VariableValue] | None = None
    ) -> StoredTool:
        """List a registered MCP server's tools again; ids stay with the names they had."""
        return await self.mcp_servers.refresh(ident, variables)

    async def create(
        self, definition: ToolDefinition, variables: Mapping[str, VariableValue] | None = None
    ) -> StoredTool:
        """Register a new tool; its key must be free. An MCP server's tools are listed now."""
        self._check_key_free(definition.key)
        await self.check_code(definition)
        sealed = self._sealed(definition)
        if isinstance(sealed, McpToolDefinition):
            refuse_stdio(sealed)
            sealed = await self.mcp_servers.discover(sealed, variables or {})
        else:
            self._factory.build(sealed)
        now = datetime.now(UTC)
        stored = StoredTool(id=str(ULID()), definition=sealed, created=now, updated=now)
        try:
            await self._tools.store.insert(stored)
        except KeyTaken:
            raise Conflict(f"a tool with key {definition.key!r} exists", param="key") from None
        return stored

    async def update(
        self,
        ident: str,
        changes: Mapping[str, Any],
        variables: Mapping[str, VariableValue] | None = None,
    ) -> StoredTool:
        """Apply a PATCH: top-level fields merge, a nested payload replaces the stored one.

        A new `mcp` payload is discovered again (tool ids kept by name).
        """
        current = self._writable(await self.get(ident))
        body = {**current.definition.model_dump(mode="json", exclude_none=True), **changes}
        if body.get("type") != current.definition.type:
            raise BadRequest("the type of a tool cannot change", param="type")
        definition = parse_definition(body)
        if definition.key != current.definition.key:
            self._check_key_free(definition.key)
        await self.check_code(definition)
        sealed = self._sealed(definition, current.definition)
        if isinstance(sealed, McpToolDefinition):
            refuse_stdio(sealed)
            previous = current.definition
            assert isinstance(previous, McpToolDefinition)
            if "mcp" in changes:
                sealed = await self.mcp_servers.discover(
                    sealed, variables or {}, previous=previous.mcp
                )
        else:
            self._factory.build(sealed)
        updated = current.model_copy(
            update={
                "definition": sealed,
                "updated": datetime.now(UTC),
                "version": current.version + 1,
            }
        )
        try:
            await self._tools.store.replace(updated, expected_version=current.version)
        except KeyTaken:
            raise Conflict(f"a tool with key {definition.key!r} exists", param="key") from None
        except VersionConflict:
            raise Conflict("the tool changed meanwhile; fetch it and try again") from None
        return updated

    async def check_code(
        self, definition: ToolDefinition, *, where: str = "code_tool.code"
    ) -> None:
        """A code tool's code is compiled (in a confined child) when it is registered."""
        if not isinstance(definition, CodeToolDefinition):
            return
        if self._code is None:
            raise ManifestError(
                f"{where}: code tools need the sandbox, which is off (SIDECAR_SANDBOX_ENABLED)",
                code="sandbox_unavailable",
            )
        outcome = await self._code.check(definition.code_tool.code)
        if outcome.failure is not None:
            raise ManifestError(
                f"{where}: the code does not compile: {outcome.message}",
                code="sandbox_compile_error",
                param="code_tool.code",
            )

    async def delete(self, ident: str) -> StoredTool:
        """Remove a registered tool."""
        current = self._writable(await self.get(ident))
        await self._tools.store.delete(current.id)
        return current

    async def page(
        self, *, limit: int, starting_after: str | None, ending_before: str | None
    ) -> Page:
        """Newest first, manifests and stored tools merged; cursors are tool ids or keys."""
        after = await self._cursor(starting_after, "starting_after")
        before = await self._cursor(ending_before, "ending_before")
        stored, more = await self._tools.store.page(
            limit=limit, starting_after=after, ending_before=before
        )
        chosen, has_more = merged_page(
            stored, more, self._tools.manifests(), limit=limit, after=after, before=before
        )
        return Page(chosen, has_more)

    async def _cursor(self, ident: str | None, param: str) -> str | None:
        if ident is None:
            return None
        ulid = parse_tool_id(ident)
        if ulid is not None:
            return ulid
        found = await self._tools.find(ident)
        if found is None:
            raise BadRequest(f"{param} {ident!r} is neither a tool id nor a known key", param=param)
        return found.id

    def _check_key_free(self, key: str) -> None:
        if self._tools.is_manifest_key(key) or key in self._builtins:
            raise Conflict(f"key {key!r} is taken by a manifest or platform tool", param="key")

    def _writable(self, stored: StoredTool) -> StoredTool:
        if stored.source == "manifest":
            raise Conflict(
                f"tool {stored.definition.key!r} comes from a manifest file; edit the file instead",
                code="read_only_tool",
            )
        return stored

    def _sealed(
        self, definition: ToolDefinition, previous: ToolDefinition | None = None
    ) -> ToolDefinition:
        if isinstance(definition, McpToolDefinition):
            before_mcp = previous.mcp if isinstance(previous, McpToolDefinition) else None
            return definition.model_copy(
                update={"mcp": self._factory.seal_mcp(definition.mcp, before_mcp)}
            )
        if not isinstance(definition, HttpToolDefinition):
            return definition
        before = previous.http if isinstance(previous, HttpToolDefinition) else None
        return definition.model_copy(
            update={"http": self._factory.seal_headers(definition.http, before)}
        )
