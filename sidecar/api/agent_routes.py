"""The orq-compatible agents API: `/v2/agents` (manifest agents are read-only)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sidecar.api.models import ToolList
from sidecar.api.wire import json_response, page_query, read_json
from sidecar.errors import BadRequest
from sidecar.registry.agents import Agents
from sidecar.services import services_from

__all__ = ["create_agent", "delete_agent", "get_agent", "list_agents", "update_agent"]

# Fields the service sets itself: ignored, so that a fetched agent can be sent back.
READ_ONLY_FIELDS = frozenset(
    {
        "_id",
        "id",
        "status",
        "created",
        "updated",
        "version",
        "version_hash",
        "project_id",
        "workspace_id",
        "created_by_id",
        "updated_by_id",
        "metrics",
    }
)


def _agents(request: Request) -> Agents:
    agents = services_from(request).agents
    if agents is None:
        raise RuntimeError("the agents are not open")
    return agents


async def list_agents(request: Request) -> Response:
    """A page of agents, newest first (`limit`, `starting_after`, `ending_before`)."""
    query = page_query(request)
    agents, has_more = await _agents(request).page(
        limit=query.limit, starting_after=query.starting_after, ending_before=query.ending_before
    )
    return json_response(ToolList(data=[agent.to_wire() for agent in agents], has_more=has_more))


async def create_agent(request: Request) -> Response:
    """Register an agent; 201 and the agent with its `_id`, as orq answers."""
    agent = await _agents(request).create(await _body(request))
    return json_response(agent.to_wire(), status=201)


async def get_agent(request: Request) -> Response:
    """One agent by key, `agent_<ULID>` or bare ULID."""
    agent = await _agents(request).get(request.path_params["agent_key"])
    return json_response(agent.to_wire())


async def update_agent(request: Request) -> Response:
    """Change an agent: top-level fields replace the stored ones; `settings` merges."""
    agent = await _agents(request).update(request.path_params["agent_key"], await _body(request))
    return json_response(agent.to_wire())


async def delete_agent(request: Request) -> Response:
    """Remove an agent registered through the API; 204, as orq answers."""
    await _agents(request).delete(request.path_params["agent_key"])
    return Response(status_code=204)


async def _body(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("an agent must be a JSON object")
    return {name: value for name, value in body.items() if name not in READ_ONLY_FIELDS}
