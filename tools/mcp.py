"""MCP tools (`type: "mcp"`): the tools of a remote MCP server, called through a pool (SPEC §2.7).

A registered MCP tool is a server (`server_url` + `connection_type`, or a local
`command` for `stdio`) and the tools it listed when it was registered or last
refreshed (`tools[]`, each with an id of its own). Each of those is one `McpTool`.
`{{name}}` placeholders in the URL, header values and stdio environment are filled
from the call's variables (secrets included) when the call runs; the pool keys its
connections by what they resolve to, so calls with other credentials never share one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from tools.base import (
    NO_SECRETS,
    Binding,
    FunctionDefinition,
    JsonObject,
    McpConnector,
    McpServer,
    McpToolInfo,
    Renderer,
    SecretMask,
    ToolContext,
    ToolError,
    ToolResult,
    VariableValue,
)
from tools.http import HeaderValue
from tools.schemas import EMPTY_OBJECT_SCHEMA, check_object_schema

__all__ = [
    "AllowedTools",
    "InlineMcpTool",
    "McpSpec",
    "McpTool",
    "McpToolEntry",
    "call_result",
    "entry_of",
    "model_schema",
    "render_server",
]

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
DEFAULT_MAX_BYTES = 1_048_576


class McpToolEntry(BaseModel):
    """One tool of a server, as discovered: `{"id", "name", "description", "schema"}`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    id: str
    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    input_schema: dict[str, Any] = Field(
        default_factory=lambda: dict(EMPTY_OBJECT_SCHEMA), alias="schema"
    )
    read_only: StrictBool = False


class McpSpec(BaseModel):
    """A registered MCP server (`mcp` in orq's `/v2/tools` shape)."""

    model_config = ConfigDict(extra="forbid")

    server_url: str | None = Field(default=None, min_length=1)
    connection_type: Literal["http", "sse", "stdio"] = "http"
    headers: dict[str, str | HeaderValue] = {}
    command: str | None = Field(default=None, min_length=1)
    args: list[str] = []
    env: dict[str, str] = {}
    tools: list[McpToolEntry] = []

    @model_validator(mode="after")
    def _one_way_to_reach_it(self) -> Self:
        if self.connection_type == "stdio":
            if self.command is None:
                raise ValueError("a stdio server needs a 'command'")
            if self.server_url is not None or self.headers:
                raise ValueError("a stdio server takes 'command', 'args' and 'env', not a URL")
        else:
            if self.server_url is None:
                raise ValueError(f"an {self.connection_type} server needs a 'server_url'")
            if not self.server_url.startswith(("http://", "https://", "{{")):
                raise ValueError("server_url must be an http(s) URL")
            if self.command is not None or self.args or self.env:
                raise ValueError("'command', 'args' and 'env' are for stdio servers only")
        return self


class AllowedTools(BaseModel):
    """Which of a server's tools a reference exposes (`allowed_tools`)."""

    model_config = ConfigDict(extra="forbid")

    tool_names: list[str] | None = None
    read_only: StrictBool = False

    @field_validator("tool_names")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(value))

    def admits(self, name: str, *, read_only: bool) -> bool:
        """Whether a tool of this name (and read-only flag) is exposed."""
        if self.read_only and not read_only:
            return False
        return self.tool_names is None or name in self.tool_names


def model_schema(schema: object) -> dict[str, Any]:
    """A server's input schema when it is a valid object schema, else an open object."""
    if isinstance(schema, dict):
        try:
            return check_object_schema(dict(schema))
        except ValueError:
            pass
    return {"type": "object", "additionalProperties": True}


def entry_of(info: McpToolInfo, ident: str) -> McpToolEntry:
    """The stored form of a discovered tool."""
    return McpToolEntry(
        id=ident,
        name=info.name,
        description=info.description,
        input_schema=model_schema(info.input_schema),
        read_only=info.read_only,
    )


def render_server(
    spec: McpSpec, renderer: Renderer, variables: Mapping[str, VariableValue]
) -> McpServer:
    """The server with its placeholders filled from `variables` (secrets revealed here)."""
    bindings = {name: Binding(value) for name, value in variables.items()}

    def text(template: str) -> str:
        value = renderer.header(template, bindings).value
        return value if isinstance(value, str) else str(value)

    if spec.connection_type == "stdio":
        assert spec.command is not None
        env = tuple((name, text(value)) for name, value in spec.env.items())
        return McpServer("stdio", command=spec.command, args=tuple(spec.args), env=env)
    assert spec.server_url is not None
    url = renderer.url(spec.server_url, bindings).url
    headers = tuple(
        (name, text(value.value if isinstance(value, HeaderValue) else value))
        for name, value in spec.headers.items()
    )
    return McpServer(spec.connection_type, url=url, headers=headers)


def call_result(
    content: list[Any],
    structured: Any,
    is_error: bool,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    mask: SecretMask = NO_SECRETS,
) -> JsonObject:
    """The result the model reads: `{content, structured_content?, is_error}`.

    An answer over `max_bytes` (as JSON) is cut, like an HTTP tool's body: the
    structured content goes first, then the content blocks from the end (a text block
    is cut to what still fits, redacted by `mask` before it is cut), and `truncated`
    is `true`.
    """
    result: JsonObject = {"content": content, "is_error": is_error}
    if structured is not None:
        result["structured_content"] = structured
    if _json_size(result) <= max_bytes:
        return result
    kept: list[Any] = []
    budget = max_bytes - _json_size({"content": [], "is_error": is_error, "truncated": True})
    for block in content:
        size = _json_size(block) + 1
        if size <= budget:
            kept.append(block)
            budget -= size
            continue
        if isinstance(block, dict) and isinstance(block.get("text"), str) and budget > 64:
            room = budget - _json_size({**block, "text": ""})
            kept.append({**block, "text": mask.cut(block["text"], room, size=_json_size)})
        break
    return {"content": kept, "is_error": is_error, "truncated": True}


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


class McpTool:
    """One tool of an MCP server, called through the service's connection pool."""

    def __init__(
        self, spec: McpSpec, entry: McpToolEntry, *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.spec = spec
        self.entry = entry
        self._max_bytes = max_bytes
        self._definition = FunctionDefinition(entry.name, entry.description, entry.input_schema)
        self._fixed = not _has_placeholders(spec)
        self._fixed_server: McpServer | None = None

    @property
    def definition(self) -> FunctionDefinition:
        return self._definition

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolResult:
        connector = _connector(ctx)
        # A server without placeholders is the same for every call: rendered once.
        server = self._fixed_server or render_server(self.spec, ctx.renderer, ctx.variables)
        if self._fixed:
            self._fixed_server = server
        return await _called(connector, server, self.entry.name, arguments, ctx, self._max_bytes)


def _has_placeholders(spec: McpSpec) -> bool:
    headers = [
        value.value if isinstance(value, HeaderValue) else value for value in spec.headers.values()
    ]
    texts = [spec.server_url or "", *headers, *spec.env.values()]
    return any("{{" in text for text in texts)


def _connector(ctx: ToolContext) -> McpConnector:
    if ctx.mcp is None:
        raise ToolError("MCP tools are not available here", code="mcp_unavailable")
    return ctx.mcp


async def _called(
    connector: McpConnector,
    server: McpServer,
    name: str,
    arguments: JsonObject,
    ctx: ToolContext,
    max_bytes: int,
) -> ToolResult:
    answer = await connector.call_tool(server, name, arguments, time_limit=ctx.deadline.remaining())
    return ToolResult(
        call_result(
            answer.content,
            answer.structured_content,
            answer.is_error,
            max_bytes=max_bytes,
            mask=ctx.mask,
        )
    )


class InlineMcpTool:
    """A tool of an MCP server given inline: called by name, checked against the live listing.

    Its schema is open: the server validates the arguments it receives.
    """

    def __init__(
        self,
        spec: McpSpec,
        name: str,
        allowed: AllowedTools | None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._spec = spec
        self._name = name
        self._allowed = allowed
        self._max_bytes = max_bytes
        self._definition = FunctionDefinition(
            name, f"Tool {name!r} of an MCP server", {"type": "object"}
        )

    @property
    def definition(self) -> FunctionDefinition:
        return self._definition

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolResult:
        connector = _connector(ctx)
        server = render_server(self._spec, ctx.renderer, ctx.variables)
        if self._allowed is not None and self._allowed.read_only:
            listing = await connector.list_tools(
                server, time_limit=ctx.deadline.remaining(), fresh=False
            )
            info = next((tool for tool in listing if tool.name == self._name), None)
            if info is None or not info.read_only:
                raise ToolError(
                    f"tool {self._name!r} is not a read-only tool of this server",
                    code="tool_not_allowed",
                )
        return await _called(connector, server, self._name, arguments, ctx, self._max_bytes)
