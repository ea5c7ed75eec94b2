"""The gateway door: `/v1/tools/execute`, `/v1/tools/execute/batch`, `/v1/tools/resolve`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from sidecar.api.models import (
    BatchRequest,
    ExecuteRequest,
    ResolvedTool,
    ResolveRequest,
    ResolveResponse,
)
from sidecar.api.wire import json_response, read_model, to_wire
from sidecar.errors import BadRequest, SidecarError, TooManyRequests
from sidecar.execution import (
    RETRY_LATER,
    Execution,
    Failed,
    ToolCall,
    new_call_id,
    request_redactor,
)
from sidecar.registry.references import (
    Call,
    InlineMcp,
    Registered,
    ToolExecutor,
    ToolReference,
    parse_reference,
)
from sidecar.registry.registry import Registry
from sidecar.services import services_from
from sidecar.variables import parse_variables
from tools.base import Deadline, VariableValue

__all__ = ["execute", "execute_batch", "resolve"]


async def execute(request: Request) -> Response:
    """Run one tool call."""
    body = await read_model(request, ExecuteRequest)
    call = to_call(body, {}, param="")
    execution = await services_from(request).executor.execute(call)
    outcome = execution.outcome
    if isinstance(outcome, Failed) and outcome.code in RETRY_LATER:
        raise TooManyRequests(outcome.message, code=outcome.code)  # a limit, not the tool
    return json_response(to_wire(execution))


async def execute_batch(request: Request) -> Response:
    """Run several calls concurrently (bounded); answer in the order of the calls."""
    services = services_from(request)
    body = await read_model(request, BatchRequest)
    limit = services.settings.batch_max_calls
    if len(body.calls) > limit:
        raise BadRequest(f"a batch holds at most {limit} calls", param="calls")
    shared = parse_variables(body.variables)
    calls = [to_call(entry, shared, param=f"calls.{i}.") for i, entry in enumerate(body.calls)]
    results: list[dict[str, Any]] = [{}] * len(calls)
    slots = anyio.Semaphore(services.settings.batch_concurrency)
    # One budget for the whole batch: waiting for a slot spends it too.
    deadline = Deadline.after(services.settings.max_tool_timeout)

    async def run(index: int, call: Call) -> None:
        async with slots:
            results[index] = await _execute_in_batch(services.executor, call, deadline)

    async with anyio.create_task_group() as group:
        for index, call in enumerate(calls):
            group.start_soon(run, index, call)
    return json_response({"object": "list", "data": results})


async def _execute_in_batch(
    executor: ToolExecutor, call: Call, deadline: Deadline
) -> dict[str, Any]:
    try:
        return to_wire(await executor.execute(call, deadline=deadline))
    except SidecarError as exc:  # a bad reference fails its own entry, not the batch
        call_id = request_redactor(call.variables).redact(call.call_id)
        answer = to_wire(Execution(call_id, "", Failed(exc.code, exc.message, exc.param), 0))
        del answer["tool"]  # no tool was found
        return answer


async def resolve(request: Request) -> Response:
    """The function definitions a model should see for some tools[] entries."""
    body = await read_model(request, ResolveRequest)
    registry: Registry = services_from(request).registry
    variables = parse_variables(body.variables)
    resolved: list[ResolvedTool] = []
    for index, entry in enumerate(body.tools):
        reference = parse_reference(entry, param=f"tools.{index}")
        try:
            expanded = await registry.expand(reference, variables)
        except SidecarError as exc:
            raise exc.with_message(request_redactor(variables).redact(exc.message)) from None
        for expansion in expanded:
            tool = expansion.definition
            resolved.append(
                ResolvedTool(
                    name=tool.name,
                    description=tool.description,
                    parameters=tool.parameters,
                    strict=tool.strict,
                    tool=entry
                    if expansion.reference == reference
                    else _executes_with(entry, expansion.reference),
                )
            )
    return json_response(ResolveResponse(tools=resolved))


def _executes_with(entry: dict[str, Any] | str, reference: ToolReference) -> dict[str, Any] | str:
    """The `tools[]` entry that runs one tool of an MCP server: the server's, naming it."""
    if not isinstance(entry, dict):
        return entry
    match reference:
        case Registered(ident, "mcp", member) if member is not None:
            return {**entry, "type": "mcp", "key": ident, "tool_id": member}
        case InlineMcp(_, member) if member is not None:
            return {**entry, "tool_name": member}
    return entry


def to_call(body: ExecuteRequest, shared: Mapping[str, VariableValue], *, param: str) -> Call:
    """A wire call to a `ToolCall`; the call's own variables win over the batch's."""
    own = parse_variables(body.variables, param=f"{param}variables")
    return ToolCall(
        reference=parse_reference(body.tool, param=f"{param}tool"),
        arguments=body.arguments,
        variables={**shared, **own},
        call_id=body.call_id or new_call_id(),
        timeout=body.timeout,
    )
