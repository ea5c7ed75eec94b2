"""What the MCP face offers: the entries a client lists and calls, built from data.

A `Catalog` is an ordered list of sources. Each source lists `FaceEntry`s and finds
one by name; a name taken by an earlier source hides a later one. The listing is
built anew for every `tools/list`, so a tool registered after start appears at once.

- `PlatformTools`: the `orq:*` tools, under their names (`current_date`).
- `RegisteredTools`: manifest and API tools, under their keys. How a stored tool
  appears depends on its kind: `expanders_for` maps each kind to an `Expander`
  turning one stored tool into its entries. Function tools have none: they hand
  the call back to the caller, and an MCP client has no way to run it and answer.
- `FixedEntries`: entries the service answers itself, each through a handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

import anyio
from mcp.server.context import ServerRequestContext
from mcp_types import CallToolRequestParams, CallToolResult, InputRequiredResult

from sidecar.errors import SidecarError, ToolNotFound
from sidecar.execution import Completed, Failed
from sidecar.logs import get_logger
from sidecar.registry.definitions import McpToolDefinition, StoredTool
from sidecar.registry.references import Builtin, Registered, ToolReference
from sidecar.registry.registry import Registry
from tools.base import JsonObject, Tool, VariableValue

__all__ = [
    "AnswersItself",
    "Catalog",
    "CatalogSource",
    "EntryHandler",
    "Expander",
    "FaceEntry",
    "FixedEntries",
    "OneEntry",
    "PlatformTools",
    "RegisteredTools",
    "describe",
    "expanders_for",
    "server_tools",
]

log = get_logger("sidecar.mcp.catalog")

EntryHandler: TypeAlias = Callable[
    [JsonObject, Mapping[str, VariableValue]], Awaitable[Completed | Failed]
]
"""Answers a call itself, given the arguments and the face's variables."""


@runtime_checkable
class AnswersItself(Protocol):
    """An entry that answers its calls with a protocol result of its own, using the
    request's context (progress notifications, elicitation): the tool `respond`."""

    async def answer(
        self,
        params: CallToolRequestParams,
        variables: Mapping[str, VariableValue],
        ctx: ServerRequestContext[Any],
    ) -> CallToolResult | InputRequiredResult: ...


@dataclass(frozen=True)
class FaceEntry:
    """One tool of the MCP face: how clients see it, and how a call to it runs."""

    name: str
    description: str
    input_schema: JsonObject
    target: ToolReference | EntryHandler | AnswersItself
    """A reference the executor runs, or a handler for what is not a registered tool."""
    title: str | None = None
    relays_mcp: bool = False
    """The tool is an upstream MCP server's: its content and error flag are handed on."""


Expander: TypeAlias = Callable[[StoredTool], Awaitable[list[FaceEntry]]]
"""The entries of one stored tool (none, one, or one per tool of an MCP server)."""


class CatalogSource(Protocol):
    """A provider of entries."""

    async def entries(self) -> list[FaceEntry]:
        """Every entry, as of now."""
        ...

    async def find(self, name: str) -> FaceEntry | None:
        """The entry called `name`, without building the whole listing where possible."""
        ...


def describe(description: str, display_name: str, kind: str) -> str:
    """A description that is never empty (clients and conformance checks need one)."""
    return description.strip() or f"{display_name} ({kind} tool)"


class PlatformTools:
    """The platform tools, under their names."""

    def __init__(self, tools: Mapping[str, Tool]) -> None:
        self._tools = dict(tools)

    async def entries(self) -> list[FaceEntry]:
        return [_platform_entry(name, tool) for name, tool in sorted(self._tools.items())]

    async def find(self, name: str) -> FaceEntry | None:
        tool = self._tools.get(name)
        return None if tool is None else _platform_entry(name, tool)


def _platform_entry(name: str, tool: Tool) -> FaceEntry:
    definition = tool.definition
    return FaceEntry(
        name=name,
        description=describe(definition.description, name, "platform"),
        input_schema=definition.parameters,
        target=Builtin(name),
    )


# How long the face waits for a manifest MCP server that has not listed its tools yet.
DISCOVERY_SECONDS = 10.0
# Between a server's key and one of its tools' names; a key never holds it (KEY_PATTERN).
SERVER_SEPARATOR = "__"


def expanders_for(
    registry: Registry, variables: Mapping[str, VariableValue] | None = None
) -> dict[str, Expander]:
    """How each kind of registered tool appears on the face; a kind not here does not."""
    one = OneEntry(registry)
    return {"http": one, "code": one, "mcp": ServerTools(registry, variables or {})}


class ServerTools:
    """A registered MCP server as one entry per tool it listed: `<key>__<tool name>`.

    A manifest server that has not listed its tools yet is discovered now, with the
    face's variables (the MCP variables file), within `DISCOVERY_SECONDS`; one that
    fails or takes longer is logged and left out of this listing.
    """

    def __init__(self, registry: Registry, variables: Mapping[str, VariableValue]) -> None:
        self._registry = registry
        self._variables = variables

    async def __call__(self, stored: StoredTool) -> list[FaceEntry]:
        if isinstance(stored.definition, McpToolDefinition) and not stored.definition.mcp.tools:
            try:
                with anyio.fail_after(DISCOVERY_SECONDS):
                    stored = await self._registry.mcp_servers.discovered(stored, self._variables)
            except TimeoutError:
                log.warning(
                    "mcp.server_hidden",
                    tool=stored.definition.key,
                    error=f"it did not list its tools within {DISCOVERY_SECONDS:g} s",
                )
                return []
        return server_tools(stored)


def server_tools(stored: StoredTool) -> list[FaceEntry]:
    """The entries of a server's listed tools."""
    definition = stored.definition
    if not isinstance(definition, McpToolDefinition):
        return []
    display_name = definition.display_name or definition.key
    return [
        FaceEntry(
            name=f"{definition.key}{SERVER_SEPARATOR}{entry.name}",
            description=describe(entry.description, f"{display_name}: {entry.name}", "mcp"),
            input_schema=entry.input_schema,
            target=Registered(stored.tool_id, "mcp", member=entry.id),
            title=f"{display_name}: {entry.name}",
            relays_mcp=True,
        )
        for entry in definition.mcp.tools
    ]


class OneEntry:
    """A stored tool as one entry under its key, with its model-facing schema."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def __call__(self, stored: StoredTool) -> list[FaceEntry]:
        definition = stored.definition
        reference = Registered(stored.tool_id, definition.type)
        tool = (await self._registry.resolve(reference)).tool.definition
        display_name = definition.display_name or definition.key
        return [
            FaceEntry(
                name=definition.key,
                description=describe(
                    tool.description or definition.description, display_name, definition.type
                ),
                input_schema=tool.parameters,
                target=reference,
                title=display_name,
            )
        ]


class RegisteredTools:
    """Manifest and API tools, each kind expanded by its `Expander`."""

    def __init__(self, registry: Registry, expanders: Mapping[str, Expander]) -> None:
        self._registry = registry
        self._expanders = dict(expanders)

    async def entries(self) -> list[FaceEntry]:
        found: list[FaceEntry] = []
        for stored in await self._registry.all():
            found.extend(await self._expand(stored))
        return found

    async def find(self, name: str) -> FaceEntry | None:
        """A tool by its key, or a server's tool by `<key>__<tool name>`: one lookup."""
        server_key, separator, _ = name.partition(SERVER_SEPARATOR)
        stored = await self._by_key(server_key if separator else name)
        return None if stored is None else _named(name, await self._expand(stored))

    async def _by_key(self, key: str) -> StoredTool | None:
        try:
            stored = await self._registry.get(key)
        except ToolNotFound:
            return None
        return stored if stored.definition.key == key else None  # not by id: names are keys

    async def _expand(self, stored: StoredTool) -> list[FaceEntry]:
        expander = self._expanders.get(stored.definition.type)
        if expander is None:
            return []
        try:
            return await expander(stored)
        except SidecarError as exc:  # one broken tool (say, undecryptable) hides only itself
            log.warning(
                "mcp.tool_hidden", tool=stored.definition.key, code=exc.code, error=exc.message
            )
            return []


class FixedEntries:
    """Entries given once, for calls the service answers itself."""

    def __init__(self, entries: Iterable[FaceEntry]) -> None:
        self._entries = list(entries)

    async def entries(self) -> list[FaceEntry]:
        return list(self._entries)

    async def find(self, name: str) -> FaceEntry | None:
        return _named(name, self._entries)


class Catalog:
    """The face's entries from its sources, in order; the first source to use a name wins."""

    def __init__(self, sources: Sequence[CatalogSource]) -> None:
        self._sources = list(sources)
        self._schemas: dict[str, JsonObject] = {}

    @property
    def sources(self) -> list[CatalogSource]:
        """The sources, in the order their names win."""
        return list(self._sources)

    @classmethod
    def of_registry(
        cls, registry: Registry, variables: Mapping[str, VariableValue] | None = None
    ) -> Catalog:
        """The platform tools and the registered tools of `registry`."""
        return cls(
            [
                PlatformTools(registry.builtins),
                RegisteredTools(registry, expanders_for(registry, variables)),
            ]
        )

    async def entries(self) -> list[FaceEntry]:
        """Every entry, each name once."""
        listed: dict[str, FaceEntry] = {}
        for source in self._sources:
            for entry in await source.entries():
                if entry.name in listed:
                    log.warning("mcp.name_taken", name=entry.name)
                    continue
                listed[entry.name] = entry
        self._schemas = {name: entry.input_schema for name, entry in listed.items()}
        return list(listed.values())

    async def find(self, name: str) -> FaceEntry | None:
        """The entry a call to `name` runs; None when no source has it."""
        for source in self._sources:
            entry = await source.find(name)
            if entry is not None:
                self._schemas[name] = entry.input_schema
                return entry
        return None

    def known_schema(self, name: str) -> JsonObject | None:
        """The input schema `name` had when last listed or found; None when not seen yet.

        For the MCP SDK's synchronous schema lookup: without it the SDK lists every
        tool again for each call on the 2026 protocol.
        """
        return self._schemas.get(name)


def _named(name: str, entries: Iterable[FaceEntry]) -> FaceEntry | None:
    return next((entry for entry in entries if entry.name == name), None)
