"""The registered tools as the registry reads them: manifests (in memory) and the store."""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.errors import Conflict, ToolNotFound
from sidecar.registry.definitions import StoredTool, parse_tool_id
from sidecar.registry.store import ToolStore, VersionConflict

__all__ = ["StoredTools"]


class StoredTools:
    """Manifest tools and API-registered tools, found by `tool_<ULID>`, bare ULID or key."""

    def __init__(self, store: ToolStore, manifest_tools: Sequence[StoredTool] = ()) -> None:
        self.store = store
        self._manifests_by_id = {tool.id: tool for tool in manifest_tools}
        self._manifests_by_key = {tool.definition.key: tool for tool in manifest_tools}

    async def find(self, ident: str) -> StoredTool | None:
        """The tool `ident` names, or None."""
        ulid = parse_tool_id(ident)
        if ulid is not None:
            found = self._manifests_by_id.get(ulid) or await self.store.get(ulid)
            if found is not None:
                return found
        return self._manifests_by_key.get(ident) or await self.store.get_by_key(ident)

    async def get(self, ident: str, *, param: str = "tool_id") -> StoredTool:
        """The tool `ident` names; `ToolNotFound` when there is none."""
        stored = await self.find(ident)
        if stored is None:
            raise ToolNotFound(f"no tool with id or key {ident!r}", param=param)
        return stored

    async def all(self) -> list[StoredTool]:
        """Every registered tool, manifests first."""
        return [*self._manifests_by_id.values(), *await self.store.all()]

    def manifests(self) -> list[StoredTool]:
        """The manifest tools."""
        return list(self._manifests_by_id.values())

    def is_manifest_key(self, key: str) -> bool:
        """Whether a manifest tool has `key`."""
        return key in self._manifests_by_key

    async def save_refreshed(self, updated: StoredTool, current: StoredTool) -> None:
        """Keep a tool whose listing changed: a manifest's in memory until the service
        restarts, a registered one in the store if nobody changed it meanwhile."""
        if current.source == "manifest":
            self._manifests_by_id[current.id] = updated
            self._manifests_by_key[updated.definition.key] = updated
            return
        try:
            await self.store.replace(updated, expected_version=current.version)
        except VersionConflict:
            raise Conflict("the tool changed meanwhile; try again") from None
