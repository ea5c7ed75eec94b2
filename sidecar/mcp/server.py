"""The MCP face: the catalog's tools over MCP, every call run by the executor.

Clients list the catalog (`sidecar.mcp.catalog`) and call its entries by name.
Calls carry no orq `variables`, so every call gets the ones of the operator's
variables file. Outcomes become `CallToolResult`s: a failure is a result with
`is_error` (its text already redacted by the executor), never an exception
crossing the protocol.

Two transports serve the same server: Streamable HTTP at `/mcp` of the service's
app (both protocol eras: 2025 sessions and the sessionless 2026 revision), and
stdio for `sidecar mcp`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, TypeAlias

import anyio
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    InputRequiredResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from sidecar.errors import SidecarError
from sidecar.execution import Completed, Failed, Outcome, RequiresAction, ToolCall
from sidecar.logs import get_logger, redacting
from sidecar.mcp.catalog import AnswersItself, Catalog, FaceEntry
from sidecar.mcp.lean_calls import LeanToolCalls, PlainCall
from sidecar.mcp.prompts import AgentPrompts
from sidecar.mcp.respond import RespondTool
from sidecar.redaction import Redactor
from sidecar.registry.references import ToolExecutor
from sidecar.services import Services
from sidecar.settings import Settings
from sidecar.variables import secret_values
from tools.base import JsonObject, VariableValue

__all__ = [
    "McpEndpoint",
    "McpFace",
    "build_mcp_server",
    "mcp_face",
    "mcp_http_app",
    "open_face",
    "serve_stdio",
    "to_result",
]

log = get_logger("sidecar.mcp.server")
SERVER_NAME = "orq-sidecar"
INSTRUCTIONS = (
    "Tools of the orq tool sidecar: platform tools and the tools registered with it, "
    "and `respond`, which answers a message with a model or an agent of the service "
    "(running the tools it needs). Each call runs server-side; a failed call answers a "
    "result with isError and a 'code: message' text."
)
McpServer: TypeAlias = Server[Any]


@dataclass(frozen=True)
class McpFace:
    """The face's MCP server, and its plain-call answer for the lean `/mcp` path."""

    server: McpServer
    catalog: Catalog
    call_entry: PlainCall


def mcp_face(services: Services, variables: Mapping[str, VariableValue]) -> McpServer:
    """The MCP server of `services`' face (see `open_face`)."""
    return open_face(services, variables).server


def open_face(services: Services, variables: Mapping[str, VariableValue]) -> McpFace:
    """The MCP face of `services`: its platform and registered tools, run by its executor,
    and `respond`.

    The one assembly of the face, for `/mcp` (`serve`) and stdio (`mcp`).
    """
    catalog = Catalog.of_registry(services.registry, variables)
    if services.responder is not None:
        settings = services.settings
        respond = RespondTool(
            services.responder,
            services.agents,
            default_model=settings.respond_model,
            default_agent=settings.respond_agent,
        )
        catalog = Catalog([respond, *catalog.sources])
    face = _Face(services.executor, catalog, variables)
    prompts = AgentPrompts(services.agents) if services.agents is not None else None
    return McpFace(_server(face, catalog, prompts), catalog, face.call_entry)


def build_mcp_server(
    *,
    executor: ToolExecutor,
    catalog: Catalog,
    variables: Mapping[str, VariableValue],
    prompts: AgentPrompts | None = None,
) -> McpServer:
    """A fresh MCP server answering `tools/list` from `catalog`, calls through `executor`,
    and, given `prompts`, the agents as prompts."""
    return _server(_Face(executor, catalog, variables), catalog, prompts)


def _server(face: _Face, catalog: Catalog, prompts: AgentPrompts | None) -> McpServer:
    return Server(
        SERVER_NAME,
        version=version("orq-sidecar"),
        instructions=INSTRUCTIONS,
        on_list_tools=face.list_tools,
        on_call_tool=face.call_tool,
        get_tool_input_schema=catalog.known_schema,
        on_list_prompts=prompts.list_prompts if prompts is not None else None,
        on_get_prompt=prompts.get_prompt if prompts is not None else None,
    )


class _Face:
    """The request handlers; the only place where MCP calls meet the executor."""

    def __init__(
        self, executor: ToolExecutor, catalog: Catalog, variables: Mapping[str, VariableValue]
    ) -> None:
        self._executor = executor
        self._catalog = catalog
        self._variables = dict(variables)
        secrets = secret_values(self._variables)
        self._redactor = Redactor(secrets) if secrets else Redactor.empty()

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        if params is not None and params.cursor is not None:
            raise MCPError(INVALID_PARAMS, "unknown cursor: the tool list has one page")
        try:
            entries = await self._catalog.entries()
        except Exception:  # the MCP edge: log it, answer a clean protocol error
            with redacting(self._redactor):
                log.exception("mcp.list_failed")
            raise MCPError(INTERNAL_ERROR, "the tool list is unavailable; see the logs") from None
        return ListToolsResult(tools=[_listed(entry) for entry in entries])

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult | InputRequiredResult:
        with redacting(self._redactor):
            try:
                entry = await self._catalog.find(params.name)
                if entry is not None and isinstance(entry.target, AnswersItself):
                    return await entry.target.answer(params, self._variables, ctx)
            except Exception:  # the MCP edge: no exception crosses the protocol
                log.exception("mcp.call_crashed", tool=params.name)
                return _crashed()
        return await self.call_entry(params.name, params.arguments or {}, entry)

    async def call_entry(
        self, name: str, arguments: JsonObject, entry: FaceEntry | None
    ) -> CallToolResult:
        """A call of a plain entry, found already (the lean `/mcp` path)."""
        with redacting(self._redactor):
            try:
                return await self._call(name, arguments, entry)
            except Exception:  # the MCP edge: no exception crosses the protocol
                log.exception("mcp.call_crashed", tool=name)
                return _crashed()

    async def _call(
        self, name: str, arguments: JsonObject, entry: FaceEntry | None
    ) -> CallToolResult:
        if entry is None:
            shown = self._redactor.redact(name)
            return _error("tool_not_found", f"no tool named {shown!r}; tools/list names them")
        if callable(entry.target):
            return to_result(await entry.target(arguments, self._variables))
        if isinstance(entry.target, AnswersItself):  # answered by `call_tool` already
            return _error("internal_error", f"{name} answers through its own handler")
        call = ToolCall(reference=entry.target, arguments=arguments, variables=self._variables)
        try:
            execution = await self._executor.execute(call)
        except SidecarError as exc:  # removed between the lookup and the call
            return _error(exc.code, exc.message)
        return to_result(execution.outcome, relayed=entry.relays_mcp)


def _listed(entry: FaceEntry) -> Tool:
    return Tool(
        name=entry.name,
        title=entry.title,
        description=entry.description,
        input_schema=entry.input_schema,
    )


def to_result(outcome: Outcome, *, relayed: bool = False) -> CallToolResult:
    """An outcome as MCP answers it: the result as JSON text, or an error result.

    `relayed`: the result is an upstream MCP server's (`{content, structured_content?,
    is_error}`), handed on as that server gave it (already redacted).
    """
    match outcome:
        case Completed(result) if relayed and isinstance(result, dict):
            return CallToolResult.model_validate(
                {
                    "content": result.get("content", []),
                    "structuredContent": result.get("structured_content"),
                    "isError": bool(result.get("is_error")),
                }
            )
        case Completed(result):
            return CallToolResult(
                content=[TextContent(text=json.dumps(result, ensure_ascii=False))],
                structured_content=result if isinstance(result, dict) else None,
            )
        case Failed(code, message):
            return _error(code, message)
        case RequiresAction():  # not listed, so only a handler could return one
            return _error("requires_action", "this tool is run by the caller, not over MCP")


def _crashed() -> CallToolResult:
    return _error("internal_error", "the call failed unexpectedly; see the logs")


def _error(code: str, message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=f"{code}: {message}")], is_error=True)


def mcp_http_app(face: McpFace, settings: Settings) -> ASGIApp:
    """The Streamable HTTP transport of `face` at `/mcp` (its server's session manager must
    run): plain tool calls of the 2026 revision on the lean path, the rest to the package."""
    security = TransportSecuritySettings(
        allowed_hosts=list(settings.mcp_hosts), allowed_origins=list(settings.mcp_origins)
    )
    package = face.server.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=security,
        max_request_body_size=settings.max_body_bytes,
    )
    server = face.server
    return LeanToolCalls(
        package, face.catalog, face.call_entry, security, lambda: server.server_info_stamp
    )


class McpEndpoint:
    """The `/mcp` route of the service: hands requests to the app's MCP transport.

    The transport is built in the lifespan, with the services, so the route finds
    it on the app's state.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport: ASGIApp = scope["app"].state.mcp
        await transport(scope, receive, send)


async def serve_stdio(opening: AbstractAsyncContextManager[McpServer]) -> None:
    """Serve over stdin and stdout until stdin closes, or until SIGTERM or SIGINT.

    The transport is opened first: while it is, file descriptors 0 and 1 point at
    /dev/null and stderr, so nothing `opening` starts (a child process, a stray
    print) can write into the protocol.
    """
    stop = _Stop()
    async with stdio_server() as (read, write):
        async with opening as server, anyio.create_task_group() as group:
            group.start_soon(stop.on_signal, group.cancel_scope)
            await server.run(read, write, server.create_initialization_options())
            group.cancel_scope.cancel()
        if stop.signal is not None:
            # The services are closed. The thread reading stdin cannot be interrupted,
            # so end the process now rather than when the client closes stdin.
            log.info("mcp.stopped", signal=stop.signal)
            sys.stderr.flush()
            os._exit(0)


class _Stop:
    """Cancels the serving on SIGTERM or SIGINT and remembers which one came."""

    signal: str | None = None

    async def on_signal(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for received in signals:
                self.signal = signal.Signals(received).name
                scope.cancel()
                return
