"""The orq-compatible tool registry: `/v2/tools`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sidecar.api.models import ToolList
from sidecar.api.wire import json_response, page_limit, page_query, read_json
from sidecar.errors import BadRequest, ToolNotFound
from sidecar.registry.definitions import parse_definition
from sidecar.registry.registry import Registry
from sidecar.registry.store import ToolVersion
from sidecar.services import services_from
from sidecar.variables import parse_variables
from tools.base import VariableValue

__all__ = [
    "create_tool",
    "delete_tool",
    "get_tool",
    "get_tool_version",
    "list_tool_versions",
    "list_tools",
    "refresh_tool",
    "update_tool",
]


def _registry(request: Request) -> Registry:
    return services_from(request).registry


async def list_tools(request: Request) -> Response:
    """A page of tools, newest first (`limit`, `starting_after`, `ending_before`)."""
    query = page_query(request)
    page = await _registry(request).page(
        limit=query.limit, starting_after=query.starting_after, ending_before=query.ending_before
    )
    return json_response(
        ToolList(data=[tool.to_wire() for tool in page.tools], has_more=page.has_more)
    )


async def create_tool(request: Request) -> Response:
    """Register a tool; answers 200 and the stored tool with its `_id`, as orq does."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("a tool definition must be a JSON object")
    variables = _variables(body)
    definition = parse_definition(_without_read_only(body))
    stored = await _registry(request).create(definition, variables)
    return json_response(stored.to_wire())


async def refresh_tool(request: Request) -> Response:
    """List a registered MCP server's tools again (body: optional `variables`)."""
    body = await read_json(request) if await request.body() else {}
    if not isinstance(body, dict) or set(body) - {"variables", "discovery_variables"}:
        raise BadRequest("a refresh body may only hold 'variables' or 'discovery_variables'")
    stored = await _registry(request).refresh(request.path_params["tool_id"], _variables(body))
    return json_response(stored.to_wire())


def _variables(body: dict[str, Any]) -> dict[str, VariableValue]:
    """The values an MCP server's URL and headers need to be reached; never stored.

    `variables` as for tool calls, and `discovery_variables` as orq names them: plain
    strings, each taken as a secret (redacted from answers and logs, used once).
    """
    raw = body.pop("variables", None)
    if raw is not None and not isinstance(raw, dict):
        raise BadRequest("variables must be an object", param="variables")
    discovery = body.pop("discovery_variables", None)
    if discovery is not None and (
        not isinstance(discovery, dict)
        or not all(isinstance(value, str) for value in discovery.values())
    ):
        raise BadRequest(
            "discovery_variables must map names to strings", param="discovery_variables"
        )
    secrets = {name: {"secret": True, "value": value} for name, value in (discovery or {}).items()}
    return parse_variables({**(raw or {}), **secrets})


async def get_tool(request: Request) -> Response:
    """One tool by `tool_<ULID>`, bare ULID or key."""
    stored = await _registry(request).get(request.path_params["tool_id"])
    return json_response(stored.to_wire())


async def update_tool(request: Request) -> Response:
    """Change a tool: top-level fields merge; a nested payload replaces the stored one."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("a tool update must be a JSON object")
    variables = _variables(body)
    stored = await _registry(request).update(
        request.path_params["tool_id"], _without_read_only(body), variables
    )
    return json_response(stored.to_wire())


async def delete_tool(request: Request) -> Response:
    """Remove a tool registered through the API; 200 with an empty body, as orq answers."""
    await _registry(request).delete(request.path_params["tool_id"])
    return Response(status_code=200)


READ_ONLY_FIELDS = frozenset(
    {
        "_id",
        "id",
        "created",
        "updated",
        "version",
        "version_hash",
        "source",
        "project_id",
        "workspace_id",
        "created_by_id",
        "updated_by_id",
    }
)


def _without_read_only(body: dict[str, Any]) -> dict[str, Any]:
    """Fields the service sets itself are ignored, so a fetched tool can be sent back."""
    return {name: value for name, value in body.items() if name not in READ_ONLY_FIELDS}


async def list_tool_versions(request: Request) -> Response:
    """A tool's versions, newest first: a record per change (create, update, refresh)."""
    versions = await _registry(request).versions(request.path_params["tool_id"])
    limit = page_limit(request.query_params.get("limit"))
    return json_response(
        {
            "object": "list",
            "data": [_version_wire(version) for version in versions[:limit]],
            "has_more": len(versions) > limit,
        }
    )


async def get_tool_version(request: Request) -> Response:
    """One version of a tool, by its id."""
    wanted = request.path_params["version_id"]
    for version in await _registry(request).versions(request.path_params["tool_id"]):
        if version.id == wanted:
            return json_response(_version_wire(version))
    raise ToolNotFound(f"tool has no version {wanted!r}", param="version_id")


def _version_wire(version: ToolVersion) -> dict[str, Any]:
    """A version record in orq's shape; `data` is the tool as it was then."""
    tool = version.tool
    return {
        "_id": version.id,
        "created_at": tool.updated.isoformat(),
        "updated_at": tool.updated.isoformat(),
        "version": str(tool.version),
        "checksum": tool.version_hash(),
        "entityType": "tool",
        "entityId": tool.tool_id,
        "data": tool.to_wire(),
        "workspace_id": "default",
        "description": tool.definition.description,
    }
