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
from sidecar.api.wire import json_response, read_model
from sidecar.errors import BadRequest, SidecarError
from sidecar.execution import (
    Completed,
    Execution,
    Executor,
    Failed,
    RequiresAction,
    ToolCall,
    new_call_id,
    request_redactor,
)
from sidecar.redaction import Redactor
from sidecar.registry.references import parse_reference
from sidecar.registry.registry import Registry
from sidecar.services import Services
from sidecar.variables import parse_variables, secret_values
from tools.base import Deadline, VariableValue

__all__ = ["execute", "execute_batch", "resolve"]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def execute(request: Request) -> Response:
    """Run one tool call."""
    body = await read_model(request, ExecuteRequest)
    call = to_call(body, {}, param="")
    return json_response(to_wire(await _services(request).executor.execute(call)))


async def execute_batch(request: Request) -> Response:
    """Run several calls concurrently (bounded); answer in the order of the calls."""
    services = _services(request)
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

    async def run(index: int, call: ToolCall) -> None:
        async with slots:
            results[index] = await _execute_in_batch(services.executor, call, deadline)

    async with anyio.create_task_group() as group:
        for index, call in enumerate(calls):
            group.start_soon(run, index, call)
    return json_response({"object": "list", "data": results})


async def _execute_in_batch(
    executor: Executor, call: ToolCall, deadline: Deadline
) -> dict[str, Any]:
    try:
        return to_wire(await executor.execute(call, deadline=deadline))
    except SidecarError as exc:  # a bad reference fails its own entry, not the batch
        call_id = request_redactor(call).redact(call.call_id)
        answer = to_wire(Execution(call_id, "", Failed(exc.code, exc.message, exc.param), 0))
        del answer["tool"]  # no tool was found
        return answer


async def resolve(request: Request) -> Response:
    """The function definitions a model should see for some tools[] entries."""
    body = await read_model(request, ResolveRequest)
    registry: Registry = _services(request).registry
    variables = parse_variables(body.variables)
    resolved: list[ResolvedTool] = []
    for index, entry in enumerate(body.tools):
        reference = parse_reference(entry, param=f"tools.{index}")
        try:
            expanded = await registry.expand(reference, variables)
        except SidecarError as exc:
            exc.message = Redactor(secret_values(variables)).redact(exc.message)
            raise
        for tool, executes_with in expanded:
            # An MCP server gives one entry per tool, each with the reference that runs it.
            target: dict[str, Any] | str = (
                {**entry, **executes_with} if isinstance(entry, dict) else entry
            )
            resolved.append(
                ResolvedTool(
                    name=tool.name,
                    description=tool.description,
                    parameters=tool.parameters,
                    strict=tool.strict,
                    tool=target,
                )
            )
    return json_response(ResolveResponse(tools=resolved))


def to_call(body: ExecuteRequest, shared: Mapping[str, VariableValue], *, param: str) -> ToolCall:
    """A wire call to a `ToolCall`; the call's own variables win over the batch's."""
    own = parse_variables(body.variables, param=f"{param}variables")
    return ToolCall(
        reference=parse_reference(body.tool, param=f"{param}tool"),
        arguments=body.arguments,
        variables={**shared, **own},
        call_id=body.call_id or new_call_id(),
        timeout=body.timeout,
    )


def to_wire(execution: Execution) -> dict[str, Any]:
    """An execution as the API answers it: the `ExecuteResponse` shape, without nulls.

    A plain dict rather than the model: the model documents the contract (and a test
    holds every outcome to it), while this path, taken by every call, skips
    validating again what the typed pipeline built.
    """
    outcome = execution.outcome
    answer: dict[str, Any] = {
        "call_id": execution.call_id,
        "tool": execution.tool,
        "status": outcome.status,
    }
    match outcome:
        case Completed(result):
            answer["result"] = result
        case Failed(code, message, param):
            error = {"code": code, "message": message}
            answer["error"] = error if param is None else {**error, "param": param}
        case RequiresAction(call):
            answer["function_call"] = {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            }
    answer["duration_ms"] = execution.duration_ms
    return answer
