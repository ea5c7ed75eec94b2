"""The OpenAPI 3.1 document, generated from the wire models."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from sidecar.api.models import (
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    ExecuteRequest,
    ExecuteResponse,
    ResolveRequest,
    ResolveResponse,
    ToolList,
)
from sidecar.llm.responses import ResponseRequest
from sidecar.registry.agent_definitions import AgentDefinition
from sidecar.registry.definitions import (
    CodeToolDefinition,
    FunctionToolDefinition,
    HttpToolDefinition,
    JsonSchemaToolDefinition,
)

__all__ = ["openapi_document"]

REF = "#/components/schemas/{model}"
MODELS: tuple[type[BaseModel], ...] = (
    ExecuteRequest,
    ExecuteResponse,
    BatchRequest,
    BatchResponse,
    ResolveRequest,
    ResolveResponse,
    ToolList,
    ErrorResponse,
    ResponseRequest,
    AgentDefinition,
    HttpToolDefinition,
    CodeToolDefinition,
    FunctionToolDefinition,
    JsonSchemaToolDefinition,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


PAGE_PARAMETERS = [
    {"name": name, "in": "query", "schema": schema}
    for name, schema in (
        # A whole number; orq's SDK sends it as a float (`50.0`), which is one too.
        ("limit", {"type": "number", "minimum": 1, "maximum": 200, "multipleOf": 1}),
        ("starting_after", {"type": "string", "minLength": 1}),
        ("ending_before", {"type": "string", "minLength": 1}),
    )
]


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, **_json(_ref(ErrorResponse)), **extra}


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Whole seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
# The answers of the edge, for every operation behind the API keys.
_EDGE_ERRORS = {
    "401": _error("Missing or invalid bearer API key (when keys are configured)."),
    "429": _error(
        "A limit said no for now: rate_limited, too_many_concurrent_requests, tool_busy, "
        "sandbox_busy or mcp_pool_full.",
        headers=_RETRY_AFTER,
    ),
    "503": _error(
        "shutting_down: the service is stopping; store_unavailable: the database cannot "
        "answer now (Retry-After). Send the request again.",
        headers=_RETRY_AFTER,
    ),
}
_BODY_ERRORS = {
    "400": _error("A body that is not JSON or is outside the wire model (param names it)."),
    "413": _error("The body exceeds SIDECAR_MAX_BODY_BYTES."),
}


def _operation(
    summary: str, response: dict[str, Any], body: dict[str, Any] | None = None
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", **_json(response)},
            **(_BODY_ERRORS if body is not None else {}),
            **_EDGE_ERRORS,
            "default": {"description": "Error", **_json(_ref(ErrorResponse))},
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, **_json(body)}
    return operation


def _public(operation: dict[str, Any], *, unavailable: str | None = None) -> dict[str, Any]:
    """An operation outside the API keys and the limits (the probes)."""
    responses = {"200": operation["responses"]["200"]}
    if unavailable is not None:
        responses["503"] = {"description": unavailable, **_json({"type": "object"})}
    return {**operation, "responses": responses, "security": []}


def _tool_definition() -> dict[str, Any]:
    kinds = (
        HttpToolDefinition,
        CodeToolDefinition,
        FunctionToolDefinition,
        JsonSchemaToolDefinition,
    )
    return {"oneOf": [_ref(kind) for kind in kinds]}


def _paths() -> dict[str, Any]:
    tool_object = {"type": "object", "description": "A registered tool, orq's shape."}
    tool_id = [{"name": "tool_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "/v1/tools/execute": {
            "post": _operation("Execute one tool call", _ref(ExecuteResponse), _ref(ExecuteRequest))
        },
        "/v1/tools/execute/batch": {
            "post": _operation(
                "Execute calls concurrently", _ref(BatchResponse), _ref(BatchRequest)
            )
        },
        "/v1/tools/resolve": {
            "post": _operation(
                "Model-facing definitions of tools", _ref(ResolveResponse), _ref(ResolveRequest)
            )
        },
        "/v2/tools": {
            "get": {
                **_operation("List tools", _ref(ToolList)),
                "parameters": PAGE_PARAMETERS,
            },
            "post": _operation("Register a tool", tool_object, _tool_definition()),
        },
        "/v2/tools/{tool_id}": {
            "parameters": tool_id,
            "get": _operation("Get a tool by id or key", tool_object),
            "patch": _operation("Update a tool", tool_object, {"type": "object"}),
            "delete": _deleted_with_200(_operation("Delete a tool", {})),
        },
        "/v2/tools/{tool_id}/versions": {
            "parameters": tool_id,
            "get": _operation("A tool's versions, newest first", {"type": "object"}),
        },
        "/v2/tools/{tool_id}/versions/{version_id}": {
            "parameters": [
                *tool_id,
                {
                    "name": "version_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
            ],
            "get": _operation("One version of a tool", {"type": "object"}),
        },
        **_agents_paths(),
        "/healthz": {"get": _public(_operation("Liveness", {"type": "object"}))},
        "/readyz": {
            "get": _public(
                _operation("Readiness", {"type": "object"}),
                unavailable="starting, not_ready (a check failed) or shutting_down",
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _EDGE_ERRORS["401"],
                },
            }
        },
        "/openapi.json": {"get": _operation("This document", {"type": "object"})},
        **_responses_paths("/v3/router/responses"),
        **_responses_paths("/v1/responses"),
    }


def _deleted_with_200(operation: dict[str, Any]) -> dict[str, Any]:
    """orq answers a deleted tool with 200 and an empty body."""
    operation["responses"]["200"] = {"description": "Deleted (an empty body)"}
    return operation


def _agents_paths() -> dict[str, Any]:
    """`/v2/agents`: list, create (201), read, update, delete (204)."""
    agent = {"type": "object", "description": "An agent, orq's shape (RESPONSES.md §7)."}
    create = _operation("Register an agent", agent, _ref(AgentDefinition))
    create["responses"] = {"201": create["responses"].pop("200"), **create["responses"]}
    delete = _operation("Delete an agent", {})
    delete["responses"] = {"204": {"description": "Deleted"}, **delete["responses"]}
    delete["responses"].pop("200")
    key = [{"name": "agent_key", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "/v2/agents": {
            "get": {
                **_operation("List agents", _ref(ToolList)),
                "parameters": PAGE_PARAMETERS,
            },
            "post": create,
        },
        "/v2/agents/{agent_key}": {
            "parameters": key,
            "get": _operation("Get an agent by key or id", agent),
            "patch": _operation("Update an agent", agent, {"type": "object"}),
            "delete": delete,
        },
    }


def _responses_paths(prefix: str) -> dict[str, Any]:
    """The Responses API at `prefix`: create (JSON or server-sent events), read, forget."""
    response = {"type": "object", "description": "A response object (RESPONSES.md §3)."}
    create = _operation("Create a model response", response, _ref(ResponseRequest))
    create["responses"]["200"]["content"]["text/event-stream"] = {
        "schema": {"type": "string", "description": "Server-sent events, with stream: true."}
    }
    response_id = [
        {"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    deleted = {"type": "object", "description": '{"id", "object": "response", "deleted": true}'}
    return {
        prefix: {"post": create},
        prefix + "/{response_id}": {
            "parameters": response_id,
            "get": _operation("A stored response", response),
            "delete": _operation("Forget a stored response", deleted),
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    """The whole document (built once)."""
    _, definitions = models_json_schema(
        [(model, "validation") for model in MODELS], ref_template=REF
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "orq-sidecar", "version": "0.1.0"},
        "paths": _paths(),
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
