"""Tool references: the `tools[]` entries of orq's Responses API, parsed once at the edge.

Accepted forms (SPEC §2):
- `{"type": "orq:current_date"}` and the other platform tools;
- `{"type": "orq:http" | "orq:function" | "orq:json_schema" | "orq:code", "tool_id" | "key":
  ...}`;
- `{"type": "http" | "code" | "function" | "json_schema" | "mcp", "key" | "id": ...}`
  (agent-manifest form; an MCP server's tool is named by `tool_id`, its id or its name,
  and `orq:mcp` takes that id alone); MCP references may carry `allowed_tools:
  {tool_names, read_only}`;
- an inline MCP server: `{"type": "mcp", "server_url", "connection_type"?, "headers"?,
  "allowed_tools"?}`, its tool named by `tool_name` when a call executes it;
- an inline definition: `{"type": "http", "key", "http": {...}}`, `{"type": "function",
  "function": {...}}`, `{"type": "json_schema", "json_schema": {...}}` or the flat Responses
  form `{"type": "function", "name", "parameters"}`;
- a bare string: a platform tool name, a key or an id (CLI shorthand).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from pydantic import ValidationError

from sidecar.errors import BadRequest, ManifestError
from sidecar.execution import Executor, ToolCall
from sidecar.registry.definitions import AllowedTools, McpSpec, ToolDefinition, parse_definition

__all__ = [
    "Builtin",
    "Call",
    "Inline",
    "InlineMcp",
    "Registered",
    "ToolExecutor",
    "ToolReference",
    "parse_reference",
]

PLATFORM_PREFIX = "orq:"
REGISTERED_KINDS = frozenset({"http", "code", "function", "json_schema", "mcp"})
PAYLOAD_FIELDS = {
    "http": "http",
    "function": "function",
    "json_schema": "json_schema",
    "code": "code_tool",
    "mcp": "mcp",
}


@dataclass(frozen=True)
class Builtin:
    """A platform tool, by name (`current_date`)."""

    name: str


@dataclass(frozen=True)
class Registered:
    """A tool in the registry, by id or key, optionally of an expected kind.

    For an MCP server, `member` names one of its tools (its id or name) and
    `allowed` narrows which of them the reference exposes.
    """

    ident: str
    kind: str | None = None
    member: str | None = None
    allowed: AllowedTools | None = None


@dataclass(frozen=True)
class InlineMcp:
    """An MCP server given with the call; `member` is the name of the tool to call."""

    spec: McpSpec
    member: str | None = None
    allowed: AllowedTools | None = None


@dataclass(frozen=True)
class Inline:
    """A full definition sent with the call."""

    definition: ToolDefinition


ToolReference: TypeAlias = Builtin | Registered | Inline | InlineMcp
# The pipeline's call and executor for these references (the registry resolves them).
Call: TypeAlias = ToolCall[ToolReference]
ToolExecutor: TypeAlias = Executor[ToolReference]


def parse_reference(entry: object, *, param: str = "tool") -> ToolReference:
    """One `tools[]` entry (or a bare name) to a reference; `BadRequest` names what is wrong."""
    if isinstance(entry, str):
        if not entry:
            raise BadRequest("a tool reference cannot be empty", param=param)
        return Registered(entry)
    if not isinstance(entry, dict):
        raise BadRequest("a tool reference must be an object or a string", param=param)
    kind = entry.get("type")
    if not isinstance(kind, str) or not kind:
        raise BadRequest("a tool reference needs a 'type'", param=f"{param}.type")
    if kind.startswith(PLATFORM_PREFIX):
        return _platform(kind.removeprefix(PLATFORM_PREFIX), entry, param)
    if kind not in REGISTERED_KINDS:
        raise BadRequest(f"unknown tool type {kind!r}", param=f"{param}.type")
    if kind == "mcp":
        return _mcp(entry, param)
    if PAYLOAD_FIELDS[kind] in entry or (kind == "function" and "name" in entry):
        return Inline(_inline(kind, entry, param))
    return Registered(_ident(entry, ("key", "id", "tool_id"), param), kind)


def _platform(name: str, entry: dict[str, Any], param: str) -> ToolReference:
    if name == "mcp":
        return _mcp(entry, param)
    if name in REGISTERED_KINDS:
        return Registered(_ident(entry, ("tool_id", "key", "id"), param), name)
    return Builtin(name)


def _mcp(entry: dict[str, Any], param: str) -> ToolReference:
    """An MCP reference: a registered server (and one of its tools), or an inline server."""
    allowed = _allowed(entry.get("allowed_tools"), param)
    if "server_url" in entry or "mcp" in entry:
        return InlineMcp(_inline_mcp(entry, param), _member(entry, "tool_name", param), allowed)
    if isinstance(entry.get("key") or entry.get("id"), str):
        server = _ident(entry, ("key", "id"), param)
        return Registered(server, "mcp", _member(entry, "tool_id", param), allowed)
    return Registered(_ident(entry, ("tool_id",), param), "mcp", None, allowed)


def _member(entry: dict[str, Any], field: str, param: str) -> str | None:
    value = entry.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field!r} must be a non-empty string", param=f"{param}.{field}")
    return value


def _allowed(value: object, param: str) -> AllowedTools | None:
    if value is None:
        return None
    try:
        return AllowedTools.model_validate(value)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise BadRequest(
            f"allowed_tools{'.' + where if where else ''}: {problem['msg']}",
            param=f"{param}.allowed_tools",
        ) from None


def _inline_mcp(entry: dict[str, Any], param: str) -> McpSpec:
    body = entry.get("mcp")
    if body is None:
        fields = ("server_url", "connection_type", "headers")
        body = {name: entry[name] for name in fields if name in entry}
    try:
        spec = McpSpec.model_validate(body)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise BadRequest(
            f"invalid inline MCP server: {where or 'server'}: {problem['msg']}",
            param=f"{param}.{where}" if where else param,
        ) from None
    if spec.connection_type == "stdio":
        raise BadRequest(
            "an inline MCP server cannot be a local command (stdio); register it in a manifest",
            param=f"{param}.connection_type",
        )
    return spec


def _ident(entry: dict[str, Any], fields: tuple[str, ...], param: str) -> str:
    for field in fields:
        value = entry.get(field)
        if isinstance(value, str) and value:
            return value
    names = " or ".join(repr(field) for field in fields)
    raise BadRequest(f"a {entry['type']!r} tool reference needs {names}", param=param)


def _inline(kind: str, entry: dict[str, Any], param: str) -> ToolDefinition:
    body = dict(entry)
    if kind == "function" and "function" not in body:
        body = _flat_function(body)
    body.setdefault("key", _inline_key(kind, body))
    try:
        return parse_definition(body, where="invalid inline tool")
    except ManifestError as exc:
        where = f"{param}.{exc.param}" if exc.param else param
        raise BadRequest(exc.message, param=where) from None


def _flat_function(body: dict[str, Any]) -> dict[str, Any]:
    function = {
        name: body.pop(name)
        for name in ("name", "description", "parameters", "strict")
        if name in body
    }
    return {**body, "function": function}


def _inline_key(kind: str, body: dict[str, Any]) -> str:
    spec = body.get(kind) if kind in ("function", "json_schema") else None
    if isinstance(spec, dict):
        name = spec.get("name")
        if isinstance(name, str) and name:
            return name.replace("-", "_")
    return "inline"
