"""The registry's MCP part: discovering a server's tools and picking one of them.

A registered MCP server keeps the tools it listed (`mcp.tools[]`, each with an id
that survives refreshes as long as the name does). A manifest server that lists no
tools is discovered on first use, with that call's variables, and kept in memory.
"""

from __future__ import annotations

from collections.abc import Mapping

from ulid import ULID

from sidecar.errors import BadRequest, SidecarError, ToolNotFound
from sidecar.redaction import Redactor
from sidecar.registry.definitions import AllowedTools, McpSpec, McpToolDefinition, McpToolEntry
from sidecar.registry.factory import ToolFactory
from sidecar.variables import secret_values
from tools.base import McpConnector, Renderer, ToolError, VariableValue

__all__ = ["McpDiscovery", "McpUnreachable", "pick_member"]


class McpUnreachable(SidecarError):
    """Discovering an MCP server's tools failed (it is down, refused, or answered an error)."""

    status = 502
    code = "mcp_unavailable"


class McpDiscovery:
    """Discovers MCP servers' tools through the connection pool."""

    def __init__(
        self,
        *,
        factory: ToolFactory,
        connector: McpConnector | None,
        renderer: Renderer,
        time_limit: float,
    ) -> None:
        self._factory = factory
        self._connector = connector
        self._renderer = renderer
        self._time_limit = time_limit

    async def discover(
        self,
        definition: McpToolDefinition,
        variables: Mapping[str, VariableValue],
        *,
        previous: McpSpec | None = None,
        stored: bool = True,
    ) -> McpToolDefinition:
        """The definition with `mcp.tools` listed by the server now (ids kept by name)."""
        spec, held = self._factory.reveal_mcp(definition.mcp, stored=stored)
        redactor = Redactor([*secret_values(variables), *held])
        if self._connector is None:
            raise McpUnreachable("MCP servers are not available here")
        try:
            server = self._factory.mcp_server(spec, self._renderer, variables)
            infos = await self._connector.list_tools(server, time_limit=self._time_limit)
        except TimeoutError:
            raise McpUnreachable(
                f"MCP server of {definition.key!r} did not list its tools within "
                f"{self._time_limit:g} s"
            ) from None
        except ToolError as exc:
            message = redactor.redact(exc.message)
            if exc.code == "invalid_arguments":
                raise BadRequest(
                    f"cannot reach the MCP server of {definition.key!r}: {message}; pass the "
                    "values its URL and headers use as 'variables'",
                    param="variables",
                ) from None
            raise McpUnreachable(
                f"cannot list the tools of {definition.key!r}: {message}", code=exc.code
            ) from None
        ids = {entry.name: entry.id for entry in (previous.tools if previous else [])}
        entries = [
            self._factory.mcp_entry(info, ids.get(info.name) or str(ULID())) for info in infos
        ]
        tools_listed = definition.mcp.model_copy(update={"tools": entries})
        return definition.model_copy(update={"mcp": tools_listed})


def pick_member(
    definition: McpToolDefinition, member: str | None, allowed: AllowedTools | None
) -> McpToolEntry:
    """The tool `member` (an id or a name) names, if the reference's filter lets it through."""
    tools = definition.mcp.tools
    if member is None:
        names = ", ".join(entry.name for entry in tools[:20]) or "none listed"
        raise BadRequest(
            f"{definition.key!r} is an MCP server: name one of its tools with 'tool_id' "
            f"(its tools: {names})",
            param="tool.tool_id",
        )
    entry = next((e for e in tools if member in (e.id, e.name)), None)
    if entry is None:
        raise ToolNotFound(
            f"MCP server {definition.key!r} has no tool {member!r}; refresh it if the "
            "server changed (POST /v2/tools/{id}/refresh)",
            param="tool.tool_id",
        )
    if allowed is not None and not allowed.admits(entry.name, read_only=entry.read_only):
        raise ToolNotFound(
            f"tool {entry.name!r} of {definition.key!r} is not allowed by allowed_tools",
            param="tool.allowed_tools",
        )
    return entry
