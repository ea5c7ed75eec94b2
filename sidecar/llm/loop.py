"""The agent loop (RESPONSES.md §4): model turns, server-side tools, until an answer.

Each turn asks the model (through routing); text ends the run. Tool calls of
server-side tools run through the one `Executor`, in parallel when allowed (bounded),
with the request's variables and a deadline of min(`tool_timeout`, the run's time
left, or the tool's own `timeout`); their results go back to the model. Function
tools end the run with `requires_action` once the turn's server-side calls have run,
and so do calls that need approval (unless an approver decides them at once); a
continuation's decided calls run first (`resume`). Limits end the run with
`incomplete`, keeping all output so far.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import anyio

from sidecar.execution import Completed, Execution, Failed, RequiresAction, ToolCall
from sidecar.llm.approvals import Approver, Decision, approval_request_item, refusal
from sidecar.llm.items import FunctionCallItem, FunctionOutputItem, Item, ReasoningItem
from sidecar.llm.outputs import Outputs, new_item_id
from sidecar.llm.providers.base import (
    Finish,
    ModelRequest,
    ProviderError,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    TurnBuilder,
    Usage,
)
from sidecar.llm.providers.catalog import Price
from sidecar.llm.routing import OpenedTurn, RetryPolicy, Router, Target
from sidecar.llm.tool_options import ToolOptions
from sidecar.llm.wire_items import tool_item
from sidecar.registry.definitions import HANDED_BACK_KINDS
from sidecar.registry.references import ToolExecutor, ToolReference
from tools.base import Deadline, FunctionDefinition, VariableValue

__all__ = ["AgentLoop", "Run", "RunResult", "ToolSlot"]

Status = Literal["completed", "requires_action", "incomplete", "failed"]
TOOL_CONCURRENCY = 8


@dataclass(frozen=True)
class ToolSlot:
    """A tool the model may call: what it sees, what runs it, and how its item is typed."""

    definition: FunctionDefinition
    reference: ToolReference
    kind: str  # "function"/"json_schema" (handed back), "mcp", "http", "code", a platform tool
    server_label: str | None = None
    options: ToolOptions = field(default_factory=ToolOptions)


@dataclass(frozen=True)
class Run:
    """Everything one run needs, checked and resolved by the responder."""

    targets: tuple[Target, ...]
    request: ModelRequest  # the first turn's; the items grow with each turn
    tools: Mapping[str, ToolSlot]
    variables: Mapping[str, VariableValue]
    retry: RetryPolicy
    deadline: Deadline
    call_timeout: float | None
    streaming: bool
    max_iterations: int = 100
    max_tool_calls: int | None = None
    tool_timeout: float = 300.0
    max_cost: float = 0.0
    parallel_tool_calls: bool = True
    prices: Mapping[str, Price] = field(default_factory=dict)  # by "provider/model"
    approver: Approver | None = None  # asks the user at once; else approvals pause the run


@dataclass
class RunResult:
    """How a run ended, what it answered, and what it added to the conversation."""

    status: Status
    model: str
    added: list[Item] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # call ids the client answers
    approvals: dict[str, str] = field(default_factory=dict)  # approval id -> call id
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    incomplete_reason: str | None = None
    error: dict[str, str] | None = None


class AgentLoop:
    """Runs model turns and tools until the run ends."""

    def __init__(self, router: Router, executor: ToolExecutor) -> None:
        self._router = router
        self._executor = executor

    async def run(self, run: Run, outputs: Outputs, first: OpenedTurn) -> RunResult:
        """Run from an opened first turn; errors after it end the run as `failed`."""
        result = RunResult("completed", str(first.target))
        request, opened, tool_calls = run.request, first, 0
        for iteration in range(run.max_iterations):
            await outputs.notify(f"model turn {iteration + 1} ({opened.target})")
            try:
                calls = await self._turn(run, opened, outputs, result)
            except ProviderError as exc:
                await outputs.close_text(truncated=True)
                result.status, result.error = "failed", {"code": exc.code, "message": exc.message}
                return result
            finally:
                with anyio.CancelScope(
                    shield=True
                ):  # the provider's stream is closed even on a cancel
                    await opened.aclose()
            if result.status == "incomplete" or not calls:
                return result
            if run.max_tool_calls is not None and tool_calls + len(calls) > run.max_tool_calls:
                return _incomplete(result, "max_tool_calls")
            tool_calls += len(calls)
            await self._tools(run, calls, outputs, result)
            if result.pending or result.approvals:
                result.status = "requires_action"
                return result
            if run.max_cost and result.cost >= run.max_cost:
                return _incomplete(result, "max_cost")
            if iteration + 1 == run.max_iterations:
                return _incomplete(result, "max_iterations")
            # `required` would make the model call tools forever: it applies to a run's
            # first turn only.
            choice = "auto" if request.tool_choice == "required" else request.tool_choice
            request = replace(
                request, items=(*run.request.items, *result.added), tool_choice=choice
            )
            try:
                opened = await self._router.open(
                    run.targets, request, run.retry, streaming=run.streaming,
                    deadline=run.deadline, call_timeout=run.call_timeout,
                )  # fmt: skip
            except ProviderError as exc:
                result.status, result.error = "failed", {"code": exc.code, "message": exc.message}
                return result
            result.model = str(opened.target)
        return _incomplete(result, "max_iterations")

    async def _turn(
        self, run: Run, opened: OpenedTurn, outputs: Outputs, result: RunResult
    ) -> list[FunctionCallItem]:
        """Stream one turn into the outputs; its tool calls."""
        builder = TurnBuilder(opened.target.provider)
        async for event in opened.events():
            builder.add(event)
            match event:
                case TextDelta(text):
                    await outputs.text(text)
                case ReasoningDelta(text):
                    await outputs.reasoning(text)
                case ToolCallStart() | ToolCallDelta() | Usage() | Finish():
                    pass
        turn = builder.turn()
        thought = next((item for item in turn.items if isinstance(item, ReasoningItem)), None)
        reasoning = await outputs.close_reasoning(
            thought.opaque if thought is not None else None,
            self._router.provider(opened.target).reasoning_provider,
        )
        message = await outputs.close_text()
        calls = [item for item in turn.items if isinstance(item, FunctionCallItem)]
        result.added.extend(item for item in (reasoning, message) if item is not None)
        cost = _cost(run.prices.get(str(opened.target)), turn.usage)
        result.usage = result.usage + turn.usage
        result.cost += cost
        self._router.observe_usage(opened.target, turn.usage, cost)
        if turn.finish in ("length", "content_filter") and not calls:
            _incomplete(
                result, "max_output_tokens" if turn.finish == "length" else "content_filter"
            )
        return calls

    async def _tools(
        self, run: Run, calls: Sequence[FunctionCallItem], outputs: Outputs, result: RunResult
    ) -> None:
        """Run the turn's calls; function tools wait for the client, some calls for approval."""
        result.added.extend(calls)
        server: list[tuple[FunctionCallItem, ToolSlot]] = []
        for call in calls:
            slot = run.tools.get(call.name)
            if slot is None or slot.kind in HANDED_BACK_KINDS:
                await outputs.function_call(call)
                if slot is None:
                    # The model named a tool it was not given: it reads why, and goes on.
                    result.added.append(_unknown_tool(call))
                else:
                    result.pending.append(call.call_id)
                continue
            if slot.options.requires_approval:
                decision = await run.approver(call, slot.kind) if run.approver else None
                if decision is None:
                    await outputs.notify(f"tool {call.name} waits for approval")
                    approval_id = new_item_id("mcpr")
                    await outputs.add(approval_request_item(approval_id, call, slot.server_label))
                    result.approvals[approval_id] = call.call_id
                    continue
                if not decision.approve:
                    output, error = refusal(call, decision)
                    result.added.append(output)
                    wire = tool_item(
                        slot.kind, call, new_item_id("tc"), status="failed", error=error,
                        server_label=slot.server_label,
                    )  # fmt: skip
                    await outputs.done(await outputs.add(wire), wire)
                    continue
            server.append((call, slot))
        shells: list[tuple[int, str]] = []
        for call, slot in server:
            item_id = new_item_id("tc")
            shell = tool_item(
                slot.kind, call, item_id, status="in_progress", server_label=slot.server_label
            )
            shells.append((await outputs.add(shell), item_id))
            await outputs.notify(f"tool {call.name} running")
        executions = await self._execute(run, server)
        for (call, slot), (index, item_id), execution in zip(
            server, shells, executions, strict=True
        ):
            output, wire = _tool_result(slot, call, item_id, execution)
            result.added.append(output)
            await outputs.done(index, wire)
            await outputs.notify(f"tool {call.name} {wire['status']}")

    async def resume(
        self, run: Run, decided: Sequence[tuple[FunctionCallItem, Decision]]
    ) -> list[tuple[FunctionOutputItem, dict[str, Any]]]:
        """The calls a continuation approved (run now) or rejected: what the model reads of
        each, and its output item, in the order given."""
        answers: dict[int, tuple[FunctionOutputItem, dict[str, Any]]] = {}
        approved: list[tuple[int, FunctionCallItem, ToolSlot]] = []
        for position, (call, decision) in enumerate(decided):
            slot = run.tools.get(call.name)
            if slot is None:
                missing = {"code": "tool_not_found", "message": f"no tool named {call.name!r}"}
                answers[position] = (
                    _unknown_tool(call),
                    tool_item("function", call, new_item_id("tc"), status="failed", error=missing),
                )
            elif not decision.approve:
                output, error = refusal(call, decision)
                wire = tool_item(
                    slot.kind, call, new_item_id("tc"), status="failed", error=error,
                    server_label=slot.server_label,
                )  # fmt: skip
                answers[position] = (output, wire)
            else:
                approved.append((position, call, slot))
        executions = await self._execute(run, [(call, slot) for _, call, slot in approved])
        for (position, call, slot), execution in zip(approved, executions, strict=True):
            answers[position] = _tool_result(slot, call, new_item_id("tc"), execution)
        return [answers[position] for position in range(len(decided))]

    async def _execute(
        self, run: Run, calls: Sequence[tuple[FunctionCallItem, ToolSlot]]
    ) -> list[Execution]:
        """Run server-side calls, in parallel when allowed (bounded); their executions in order."""
        limit = TOOL_CONCURRENCY if run.parallel_tool_calls else 1
        slots = anyio.Semaphore(limit)
        executions: dict[int, Execution] = {}

        async def execute(position: int, call: FunctionCallItem, slot: ToolSlot) -> None:
            async with slots:
                seconds = min(
                    slot.options.timeout or run.tool_timeout,
                    run.tool_timeout,
                    max(run.deadline.remaining(), 0.001),
                )
                arguments = slot.options.arguments(call.arguments)
                executions[position] = await self._executor.execute(
                    ToolCall(slot.reference, arguments, run.variables, call.call_id),
                    deadline=Deadline.after(seconds),
                )

        async with anyio.create_task_group() as group:
            for position, (call, slot) in enumerate(calls):
                group.start_soon(execute, position, call, slot)
        return [executions[position] for position in range(len(calls))]


def _unknown_tool(call: FunctionCallItem) -> FunctionOutputItem:
    error = {"code": "tool_not_found", "message": f"no tool named {call.name!r}"}
    return FunctionOutputItem(call.call_id, json.dumps({"error": error}))


def _tool_result(
    slot: ToolSlot, call: FunctionCallItem, item_id: str, execution: Execution
) -> tuple[FunctionOutputItem, dict[str, Any]]:
    """What the model reads of a call (its result, or its error), and its output item."""
    read: Any
    error: dict[str, str] | None
    match execution.outcome:
        case Completed(result):
            read, error = result, None
        case Failed(code, message):
            error = {"code": code, "message": message}
            read = {"error": error}
        case RequiresAction():  # a registered function tool reached as a server-side slot
            error = {"code": "requires_action", "message": "this tool is run by the caller"}
            read = {"error": error}
    wire = tool_item(
        slot.kind,
        call,
        item_id,
        status="completed" if error is None else "failed",
        result=read if error is None else None,
        error=error,
        server_label=slot.server_label,
    )
    return FunctionOutputItem(call.call_id, json.dumps(read, ensure_ascii=False)), wire


def _cost(price: Price | None, usage: Usage) -> float:
    if price is None:
        return 0.0
    cached = usage.cached_tokens if price.cached_input_per_mtok is not None else 0
    return (
        (usage.input_tokens - cached) * price.input_per_mtok
        + cached * (price.cached_input_per_mtok or 0.0)
        + usage.output_tokens * price.output_per_mtok
    ) / 1_000_000


def _incomplete(result: RunResult, reason: str) -> RunResult:
    result.status = "incomplete"
    result.incomplete_reason = reason
    return result
