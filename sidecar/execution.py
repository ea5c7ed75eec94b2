"""The one execution pipeline: every door runs tools through `Executor.execute`.

1. scope:   the call's variables and the secrets in play
2. resolve: registry lookup (builtin | id | key | inline)
3. bind:    arguments parsed and validated against the tool's JSON Schema
4. run:     `tool.run(arguments, ctx)` under the call's deadline
5. redact:  every secret in play, on the result and on the error
6. outcome: Completed | Failed | RequiresAction
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Generic, Protocol, TypeAlias, TypeVar

import httpx

from sidecar.arguments import ArgumentBinder
from sidecar.deadlines import DeadlineWatch
from sidecar.errors import SidecarError
from sidecar.ids import new_id
from sidecar.logs import get_logger, info_enabled, redacting
from sidecar.metrics import Metrics
from sidecar.redaction import Redactor
from sidecar.tracing import NO_TRACING, Tracing, Value
from sidecar.variables import secret_values
from tools.base import (
    CodeRunner,
    Deadline,
    HandBack,
    JsonObject,
    JsonValue,
    McpConnector,
    Renderer,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
    VariableValue,
)

__all__ = [
    "RETRY_LATER",
    "Completed",
    "Execution",
    "Executor",
    "Failed",
    "FunctionCall",
    "Outcome",
    "RequiresAction",
    "Resolved",
    "ToolCall",
    "ToolResolver",
    "new_call_id",
]

log = get_logger("sidecar.execution")
NO_SECRETS = Redactor.empty()
# The longest error message a caller (and the model) reads; longer ones are redacted
# whole, then cut.
MAX_ERROR_CHARS = 2_000


def new_call_id() -> str:
    """A fresh call id, `call_<ULID>`."""
    return new_id("call")


# What a call names a tool by: the registry's references. The pipeline only hands them
# to its resolver, so it does not depend on the registry that parses and resolves them.
Reference = TypeVar("Reference")
Reference_co = TypeVar("Reference_co", covariant=True)
Reference_contra = TypeVar("Reference_contra", contravariant=True)


@dataclass(frozen=True)
class Resolved:
    """A tool ready to run, its kind, and the stored secrets it holds."""

    tool: Tool
    kind: str
    held_secrets: tuple[str, ...] = ()


class ToolResolver(Protocol[Reference_contra]):
    """Finds the runnable tool a reference names (the registry)."""

    async def resolve(
        self, reference: Reference_contra, variables: Mapping[str, VariableValue] | None = None
    ) -> Resolved:
        """The tool; a `SidecarError` when the reference names none."""
        ...


@dataclass(frozen=True)
class ToolCall(Generic[Reference_co]):
    """One request to run a tool."""

    reference: Reference_co
    arguments: JsonObject | str = field(default_factory=dict)
    variables: Mapping[str, VariableValue] = field(default_factory=dict)
    call_id: str = field(default_factory=new_call_id)
    timeout: float | None = None


@dataclass(frozen=True)
class Completed:
    """The tool ran; `result` is plain JSON, redacted."""

    status: ClassVar[str] = "completed"
    result: JsonValue


@dataclass(frozen=True)
class Failed:
    """The tool could not produce a result; the message is redacted and meant for the model."""

    status: ClassVar[str] = "failed"
    code: str
    message: str
    param: str | None = None


@dataclass(frozen=True)
class FunctionCall:
    """A call the caller must execute (function tools)."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class RequiresAction:
    """The caller must run `function_call` and continue."""

    status: ClassVar[str] = "requires_action"
    function_call: FunctionCall


Outcome: TypeAlias = Completed | Failed | RequiresAction


@dataclass(frozen=True)
class Execution:
    """An outcome with what the caller needs to report it."""

    call_id: str
    tool: str
    outcome: Outcome
    duration_ms: float
    kind: str = ""  # the tool's kind (`http`, `code`, `mcp`, a platform tool's name...)


# Calls refused because a limit was full (a kind's calls at once, the sandbox's queue,
# the MCP pool); nothing ran, and the same call may succeed shortly. `POST
# /v1/tools/execute` answers them `429` with `Retry-After`.
RETRY_LATER = frozenset({"tool_busy", "sandbox_busy", "mcp_pool_full"})


class Executor(Generic[Reference]):
    """Runs tool calls; the HTTP API, the MCP server and the agent loop all come here."""

    def __init__(
        self,
        *,
        resolver: ToolResolver[Reference],
        http: httpx.AsyncClient,
        renderer: Renderer,
        metrics: Metrics,
        deadlines: DeadlineWatch,
        max_timeout: float,
        code: CodeRunner | None = None,
        mcp: McpConnector | None = None,
        kind_limits: Mapping[str, int] | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self._tracing = tracing
        self._code = code
        self._kind_limits = dict(kind_limits or {})
        self._running: dict[str, int] = dict.fromkeys(self._kind_limits, 0)
        self._mcp = mcp
        self._resolver = resolver
        self._deadlines = deadlines
        self._http = http
        self._renderer = renderer
        self._metrics = metrics
        self._max_timeout = max_timeout
        self._arguments = ArgumentBinder()

    async def execute(
        self, call: ToolCall[Reference], *, deadline: Deadline | None = None
    ) -> Execution:
        """Run one call to an outcome; raises only for a reference that names no tool."""
        started = time.perf_counter()
        try:
            resolved = await self._resolver.resolve(call.reference, call.variables)
        except SidecarError as exc:  # its message may quote the reference, made by the caller
            redacted = request_redactor(call.variables).cut(
                exc.message, MAX_ERROR_CHARS, marker="..."
            )
            raise exc.with_message(redacted) from None
        secrets = [*secret_values(call.variables), *resolved.held_secrets]
        redactor = Redactor(secrets) if secrets else NO_SECRETS
        # Tools bound their own waits (an HTTP tool's blueprint timeout); the call's
        # deadline is the caller's budget, capped by the service's ceiling.
        own = Deadline.after(min(call.timeout or self._max_timeout, self._max_timeout))
        effective = own if deadline is None or own.at < deadline.at else deadline
        with redacting(redactor):
            name = resolved.tool.definition.name
            with self._tracing.span(
                lambda: f"execute_tool {name}", lambda: _span_attributes(call, resolved)
            ) as span:
                outcome = await self._run_within_limit(call, resolved, redactor, effective)
                span.set("sidecar.tool.status", outcome.status)
                if isinstance(outcome, Failed):
                    span.fail(outcome.code, outcome.message)
            seconds = time.perf_counter() - started
            self._metrics.observe_call(resolved.kind, outcome.status, seconds)
            execution = Execution(
                redactor.redact(call.call_id),
                resolved.tool.definition.name,
                outcome,
                round(seconds * 1000, 3),
                resolved.kind,
            )
            _log(execution)
        return execution

    async def _run_within_limit(
        self,
        call: ToolCall[Reference],
        resolved: Resolved,
        redactor: Redactor,
        deadline: Deadline,
    ) -> Outcome:
        """`_run`, unless the calls of the tool's kind at once are at their limit."""
        kind = resolved.kind
        limit = self._kind_limits.get(kind)
        if limit is None:
            return await self._run(call, resolved.tool, redactor, deadline)
        if self._running[kind] >= limit:
            plural = "" if limit == 1 else "s"
            return Failed(
                "tool_busy",
                f"{limit} {kind} call{plural} already running, the most at once; try again shortly",
            )
        self._running[kind] += 1
        try:
            return await self._run(call, resolved.tool, redactor, deadline)
        finally:
            self._running[kind] -= 1

    async def _run(
        self, call: ToolCall[Reference], tool: Tool, redactor: Redactor, deadline: Deadline
    ) -> Outcome:
        budget = deadline.remaining()
        try:
            arguments = self._arguments.bind(tool, call.arguments)
            ctx = ToolContext(
                call_id=call.call_id,
                deadline=deadline,
                variables=call.variables,
                http=self._http,
                renderer=self._renderer,
                code=self._code,
                mcp=self._mcp,
                mask=redactor,
            )
            with self._deadlines.guard(deadline):
                output = await tool.run(arguments, ctx)
        except ToolError as exc:
            message = redactor.cut(exc.message, MAX_ERROR_CHARS, marker="...")
            return Failed(exc.code, message, getattr(exc, "param", None))
        except TimeoutError:
            return Failed("tool_timeout", f"the tool did not finish within {budget:.3g} s")
        except Exception:  # the pipeline is an edge: a broken tool must not take a batch down
            log.exception("tool.crashed", call_id=call.call_id)
            return Failed("internal_error", "the tool failed unexpectedly; see the service logs")
        if isinstance(output, ToolResult):
            return Completed(redactor.redact_value(output.value))
        assert isinstance(output, HandBack)
        try:
            encoded = json.dumps(output.arguments, ensure_ascii=False, allow_nan=False)
        except ValueError:
            return Failed("invalid_arguments", "arguments hold NaN or Infinity, which JSON has not")
        arguments_text = redactor.redact(encoded)
        return RequiresAction(
            FunctionCall(redactor.redact(call.call_id), output.name, arguments_text)
        )


def request_redactor(variables: Mapping[str, VariableValue]) -> Redactor:
    """A redactor for the secrets a call's own variables hold."""
    secrets = secret_values(variables)
    return Redactor(secrets) if secrets else NO_SECRETS


def _span_attributes(call: ToolCall[Reference], resolved: Resolved) -> dict[str, Value]:
    """A tool call's span attributes (GenAI's semantic conventions)."""
    return {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": resolved.tool.definition.name,
        "gen_ai.tool.call.id": call.call_id,
        # GenAI's tool types: a function the client runs, or an extension here.
        "gen_ai.tool.type": "function" if resolved.kind == "function" else "extension",
        "sidecar.tool.kind": resolved.kind,
    }


def _log(execution: Execution) -> None:
    if not info_enabled():
        return
    outcome = execution.outcome
    failure = (
        {"code": outcome.code, "error": outcome.message} if isinstance(outcome, Failed) else {}
    )
    log.info(
        "tool.executed",
        call_id=execution.call_id,
        tool=execution.tool,
        status=outcome.status,
        duration_ms=execution.duration_ms,
        **failure,
    )
