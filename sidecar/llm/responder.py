"""THE response pipeline: the HTTP door and the MCP tool `respond` both call it.

prepare   the model and its fallbacks (configured providers only; nothing is sent
          anywhere for a request that names an unknown one), the conversation (the
          stored history of `previous_response_id` and the new input), the
          instructions rendered without secrets, the tools as `/v1/tools/resolve`
          resolves them
open      the first model turn, with retries and fallbacks; a failure here is an
          HTTP error (a real 429, not a 200 with an error inside)
run       the agent loop; its output is streamed as it grows, or answered whole
keep      the response, redacted, unless `store: false`
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import anyio
from ulid import ULID

from sidecar.errors import BadRequest, SidecarError
from sidecar.llm.agents import agent_key, with_agent
from sidecar.llm.approvals import Approver, Decision, parse_decisions
from sidecar.llm.events import EventWriter
from sidecar.llm.items import FunctionCallItem, FunctionOutputItem, Item
from sidecar.llm.loop import AgentLoop, Run, RunResult, ToolSlot
from sidecar.llm.outputs import Emit, Outputs, Progress
from sidecar.llm.providers.base import ModelRequest, NamedTool, ProviderError, ToolChoice
from sidecar.llm.providers.catalog import ProviderSpec
from sidecar.llm.response_object import Prepared, response_object
from sidecar.llm.responses import ResponseRequest
from sidecar.llm.routing import OpenedTurn, RetryPolicy, Router, Target, parse_model
from sidecar.llm.store import ResponseStore, StoredResponse
from sidecar.llm.templates import render_instructions
from sidecar.llm.tool_options import tool_options
from sidecar.llm.wire_items import parse_input
from sidecar.logs import get_logger, redacting
from sidecar.redaction import Redactor
from sidecar.registry.agent_definitions import StoredAgent
from sidecar.registry.agents import Agents
from sidecar.registry.references import InlineMcp, Registered, ToolExecutor, parse_reference
from sidecar.registry.registry import Registry
from sidecar.shutdown import Drain
from sidecar.variables import parse_variables, secret_values
from tools.base import Deadline, VariableValue

__all__ = ["ModelCallFailed", "Responder", "ResponseStream"]

Write = Callable[[bytes], Awaitable[None]]
log = get_logger("sidecar.llm.responder")


class ModelCallFailed(SidecarError):
    """The model could not be reached before the response began (after retries and fallbacks)."""

    type = "api_error"

    def __init__(self, error: ProviderError) -> None:
        super().__init__(error.message, code=error.code)
        self.status = _status_of(error)
        self.retry_after = error.retry_after


@dataclass
class ResponseStream:
    """A response whose first model turn began: run it, writing its events."""

    responder: Responder
    prepared: Prepared
    first: OpenedTurn

    async def run(self, write: Write) -> None:
        """Every event, from `response.created` to the terminal one and `[DONE]`."""
        events = EventWriter(write)
        await self.responder.stream_run(self.prepared, self.first, events)
        await events.done()


class Responder:
    """Creates, keeps and reads responses."""

    def __init__(
        self,
        *,
        router: Router,
        specs: Mapping[str, ProviderSpec],
        registry: Registry,
        executor: ToolExecutor,
        store: ResponseStore,
        agents: Agents | None = None,
        drain: Drain | None = None,
    ) -> None:
        self._router = router
        self._drain = drain or Drain()
        self._agents = agents
        self._specs = dict(specs)
        self._registry = registry
        self._loop = AgentLoop(router, executor)
        self._store = store
        self._provider_keys = tuple(
            spec.key.reveal() for spec in self._specs.values() if spec.key is not None
        )
        # Built once: a request without secrets of its own needs only the keys' redactor.
        self._keys_redactor = Redactor(self._provider_keys)
        self._prices = {
            f"{name}/{model}": price
            for name, spec in self._specs.items()
            for model, price in spec.prices.items()
        }

    @property
    def providers(self) -> list[str]:
        """The configured providers' names."""
        return sorted(self._specs)

    # Creating.

    async def respond(
        self,
        request: ResponseRequest,
        *,
        approver: Approver | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Run a response to its end; the response object.

        `approver`, when given, decides each call that needs approval during the run
        (a door that can ask its user; it sees the call redacted); without it such
        calls pause the run. `progress` hears what the run does (model turns, tools).
        """
        prepared = await self.prepare(request)
        if approver is not None:
            asked = _redacted(approver, prepared.redactor)
            prepared.run = replace(prepared.run, approver=asked)
        with redacting(prepared.redactor):
            await self._resume(prepared)
            first = await self._open(prepared)
            outputs = await self._outputs(prepared, _nowhere, progress)
            result = await self._run_kept(prepared, outputs, first)
            return await self._finish(prepared, outputs, result)

    async def open_stream(self, request: ResponseRequest) -> ResponseStream:
        """Prepare a streamed response and begin its first model turn."""
        prepared = await self.prepare(request)
        with redacting(prepared.redactor):
            await self._resume(prepared)
            first = await self._open(prepared)
        return ResponseStream(self, prepared, first)

    async def stream_run(self, prepared: Prepared, first: OpenedTurn, emit: EventWriter) -> None:
        """The events of a streamed run (see `ResponseStream.run`)."""
        with redacting(prepared.redactor):
            shell = response_object(prepared, [], "in_progress", None)
            if prepared.request.store:
                # The id in `response.created` can be read back at once.
                await self._keep(prepared, shell, prepared.history, ())
            await emit("response.created", {"response": shell})
            await emit("response.in_progress", {"response": shell})
            outputs = await self._outputs(prepared, emit)
            try:
                result = await self._run_kept(prepared, outputs, first)
            except anyio.get_cancelled_exc_class():
                if self._drain.stopped:  # cut by the shutdown: the stream says so, then ends
                    with anyio.CancelScope(shield=True):
                        ended = _cut_by_shutdown(
                            response_object(prepared, outputs.items, "failed", None)
                        )
                        await emit("response.failed", {"response": ended})
                        await emit.done()
                raise
            final = await self._finish(prepared, outputs, result)
            terminal = {
                "completed": "response.completed",
                "requires_action": "response.completed",
                "incomplete": "response.incomplete",
                "failed": "response.failed",
            }[result.status]
            await emit(terminal, {"response": final})

    async def prepare(self, request: ResponseRequest) -> Prepared:
        """Check and resolve everything a run needs; nothing is sent to a provider yet."""
        request, targets = await self._targets(request)
        variables = parse_variables(request.variables)
        secrets = secret_values(variables)
        redactor = Redactor([*secrets, *self._provider_keys]) if secrets else self._keys_redactor
        previous = await self._previous(request.previous_response_id)
        lookup = _lookup_in(previous.history if previous else ())
        new_items = parse_input(request.input, lookup)
        decided = _decided(previous, new_items, parse_decisions(request.input))
        history = (*(previous.history if previous else ()), *new_items)
        if not history:
            raise BadRequest("input is empty: send a message", param="input")
        instructions = (
            render_instructions(request.instructions, request.template_engine, variables)
            if request.instructions
            else None
        )
        tools = await self._tools(request, variables, redactor)
        limits = request.limits
        model_request = ModelRequest(
            model=targets[0].model,
            items=history,
            instructions=instructions,
            tools=tuple(slot.definition for slot in tools.values()),
            tool_choice=_tool_choice(request.tool_choice),
            parallel_tool_calls=request.parallel_tool_calls,
            json_schema=_json_schema(request),
            max_output_tokens=request.max_output_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=tuple(request.stop_sequences or ()),
            reasoning_effort=request.reasoning.effort if request.reasoning else None,
        )
        retry = (
            RetryPolicy(request.retry.count, frozenset(request.retry.on_codes))
            if request.retry
            else RetryPolicy()
        )
        run = Run(
            targets=targets,
            request=model_request,
            tools=tools,
            variables=variables,
            retry=retry,
            deadline=Deadline.after(limits.max_execution_time),
            call_timeout=request.timeout.call_timeout / 1000 if request.timeout else None,
            streaming=request.stream,
            max_iterations=limits.max_iterations,
            max_tool_calls=request.max_tool_calls,
            tool_timeout=limits.tool_timeout,
            max_cost=limits.max_cost,
            parallel_tool_calls=request.parallel_tool_calls is not False,
            prices=self._prices,
        )
        return Prepared(
            request,
            run,
            redactor,
            f"resp_{ULID()}",
            int(time.time()),
            history,
            instructions,
            variables,
            str(targets[0]),
            decided=decided,
            resumed_at=len(previous.history) if previous else 0,
        )

    async def _targets(
        self, request: ResponseRequest
    ) -> tuple[ResponseRequest, tuple[Target, ...]]:
        """The request (an agent's, completed by it) and the models to try, in order."""
        key = agent_key(request.model)
        if key is None:
            return request, (
                self._target(request.model, "model"),
                *(
                    self._target(f.model, f"fallbacks.{i}.model")
                    for i, f in enumerate(request.fallbacks)
                ),
            )
        agent = await self._agent(key)
        completed = with_agent(request, agent.definition)
        where = f"the model of agent {key!r}"
        targets = [self._target(completed.request.model, "model", where)]
        if completed.fallbacks:
            for model, overrides, retry in completed.fallbacks:
                target = parse_model(model)
                if not self._usable(target.provider):
                    # An agent is written once for many deployments: a fallback on a
                    # provider this one lacks is left out, not an error.
                    log.info("agents.fallback_skipped", agent=key, model=model)
                    continue
                targets.append(replace(target, overrides=overrides, retry=retry))
        else:
            targets.extend(
                self._target(f.model, f"fallbacks.{i}.model")
                for i, f in enumerate(completed.request.fallbacks)
            )
        return completed.request, tuple(targets)

    async def _agent(self, key: str) -> StoredAgent:
        found = await self._agents.find(key) if self._agents is not None else None
        if found is None:
            raise BadRequest(f"no agent with key {key!r}", param="model", code="agent_not_found")
        return found

    def _usable(self, provider: str) -> bool:
        """Whether `provider` is configured, with its key when it needs one."""
        spec = self._specs.get(provider)
        return spec is not None and not (spec.needs_key and spec.key is None)

    def _target(self, text: str, param: str, where: str | None = None) -> Target:
        target = parse_model(text, param=param)
        spec = self._specs.get(target.provider)
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            raise BadRequest(
                f"unknown provider {target.provider!r} in {where or param} (configured: {known}); "
                "set its key (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...) or add it to "
                "SIDECAR_PROVIDERS_FILE",
                param=param,
                code="unknown_provider",
            )
        if not self._usable(target.provider):
            raise BadRequest(
                f"provider {target.provider!r} has no key: set {spec.key_setting}",
                param=param,
                code="provider_not_configured",
            )
        return target

    async def _previous(self, response_id: str | None) -> StoredResponse | None:
        if response_id is None:
            return None
        found = await self._store.get(response_id)
        if found is None:
            raise BadRequest(
                f"no stored response {response_id!r}",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return found

    async def _tools(
        self, request: ResponseRequest, variables: Mapping[str, VariableValue], redactor: Redactor
    ) -> dict[str, ToolSlot]:
        slots: dict[str, ToolSlot] = {}
        for index, entry in enumerate(request.tools):
            param = f"tools.{index}"
            options, entry = tool_options(entry, param)
            reference = parse_reference(entry, param=param)
            try:
                expanded = await self._registry.expand(reference, variables)
            except SidecarError as exc:
                raise exc.with_message(redactor.redact(exc.message)) from None
            for expansion in expanded:
                name = expansion.definition.name
                if name in slots:
                    raise BadRequest(f"two tools are named {name!r}", param=param)
                slots[name] = ToolSlot(
                    options.shown(expansion.definition),
                    expansion.reference,
                    expansion.kind,
                    _server_label(expansion.reference),
                    options,
                )
        return slots

    async def _resume(self, prepared: Prepared) -> None:
        """Run the calls the continuation approved (and answer the rejected ones) before the
        model's next turn; their outputs follow the previous conversation."""
        if not prepared.decided:
            return
        answers = await self._loop.resume(prepared.run, prepared.decided)
        at = prepared.resumed_at
        history = prepared.history
        prepared.history = (*history[:at], *(output for output, _ in answers), *history[at:])
        run = prepared.run
        prepared.run = replace(run, request=replace(run.request, items=prepared.history))
        prepared.resumed = [wire for _, wire in answers]

    async def _run_kept(self, prepared: Prepared, outputs: Outputs, first: OpenedTurn) -> RunResult:
        """The loop's run; a cancelled one (the client went away, the service stops) is
        stored as failed with `cancelled`, its output so far kept."""
        try:
            return await self._loop.run(prepared.run, outputs, first)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await first.aclose()
                if prepared.request.store:
                    ended = response_object(prepared, outputs.items, "failed", None)
                    if self._drain.stopped:
                        ended = _cut_by_shutdown(ended)
                    else:
                        ended["error"] = {
                            "code": "cancelled",
                            "message": "the response was cancelled before it finished",
                        }
                    await self._keep(prepared, ended, prepared.history, ())
            raise

    async def _outputs(
        self, prepared: Prepared, emit: Emit, progress: Progress | None = None
    ) -> Outputs:
        """The run's outputs, beginning with the items of the calls resumed before it."""
        outputs = Outputs(emit, prepared.redactor, progress)
        for item in prepared.resumed:
            await outputs.done(await outputs.add(item), item)
        return outputs

    async def _open(self, prepared: Prepared) -> OpenedTurn:
        run = prepared.run
        try:
            return await self._router.open(
                run.targets,
                run.request,
                run.retry,
                streaming=run.streaming,
                deadline=run.deadline,
                call_timeout=run.call_timeout,
            )
        except ProviderError as exc:
            failed = ModelCallFailed(exc)
            raise failed.with_message(prepared.redactor.redact(exc.message)) from None

    async def _finish(
        self, prepared: Prepared, outputs: Outputs, result: RunResult
    ) -> dict[str, Any]:
        # A run that hands function calls back is `completed` on the wire, with the calls
        # in its output: orq's SDK and OpenAI's API know no `requires_action` status.
        status = "completed" if result.status == "requires_action" else result.status
        response = response_object(prepared, outputs.items, status, result)
        if prepared.request.store:
            history = (*prepared.history, *result.added)
            await self._keep(prepared, response, history, tuple(result.pending), result.approvals)
        return response

    async def _keep(
        self,
        prepared: Prepared,
        response: dict[str, Any],
        history: tuple[Item, ...],
        pending: tuple[str, ...],
        approvals: Mapping[str, str] | None = None,
    ) -> None:
        record = StoredResponse(response, history, pending, approvals or {})
        text = prepared.redactor.redact(ResponseStore.encode(record))
        await self._store.save_text(prepared.response_id, prepared.created_at, text)

    # Reading.

    async def get(self, response_id: str) -> dict[str, Any] | None:
        """A stored response object, or None."""
        found = await self._store.get(response_id)
        return None if found is None else found.response

    async def delete(self, response_id: str) -> bool:
        """Forget a stored response."""
        return await self._store.delete(response_id)

    async def ping(self) -> None:
        """Raise if the response store cannot be read."""
        await self._store.ping()


async def _nowhere(event_type: str, payload: dict[str, Any]) -> None:
    """The events of a run nobody streams."""


def _redacted(approver: Approver, redactor: Redactor) -> Approver:
    """The approver, shown each call with its arguments redacted."""

    async def ask(call: FunctionCallItem, kind: str) -> Decision | None:
        return await approver(replace(call, arguments=redactor.redact(call.arguments)), kind)

    return ask


def _status_of(error: ProviderError) -> int:
    if error.status == 429:
        return 429
    if error.code in ("provider_timeout", "timeout"):
        return 504
    if error.status is not None and error.status in (400, 404, 413, 422):
        return 400
    return 502


def _tool_choice(raw: str | dict[str, Any] | None) -> ToolChoice | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw  # type: ignore[return-value]
    name = raw.get("name") or (raw.get("function") or {}).get("name")
    if raw.get("type") != "function" or not isinstance(name, str):
        raise BadRequest(
            "tool_choice must be auto, none, required or {'type': 'function', 'name': ...}",
            param="tool_choice",
        )
    return NamedTool(name)


def _json_schema(request: ResponseRequest) -> tuple[str, dict[str, object], bool] | None:
    form = request.text.format if request.text else None
    if form is None or form.type != "json_schema":
        return None
    if form.schema_ is None:
        raise BadRequest("text.format json_schema needs a schema", param="text.format.schema")
    return (form.name or "answer", form.schema_, bool(form.strict))


def _server_label(reference: object) -> str | None:
    if isinstance(reference, Registered):
        return reference.ident
    if isinstance(reference, InlineMcp):
        return urlsplit(reference.spec.server_url or "").hostname
    return None


def _lookup_in(history: tuple[Item, ...]) -> Callable[[str], tuple[Item, ...] | None]:
    def lookup(item_id: str) -> tuple[Item, ...] | None:
        for item in history:
            if getattr(item, "id", None) == item_id:
                return (item,)
        return None

    return lookup


def _decided(
    previous: StoredResponse | None,
    new_items: tuple[Item, ...],
    decisions: Mapping[str, Decision],
) -> tuple[tuple[FunctionCallItem, Decision], ...]:
    """A continuation answers every call the previous response waits for, and no other:
    the calls it decides, each with its decision."""
    given = [item.call_id for item in new_items if isinstance(item, FunctionOutputItem)]
    history = previous.history if previous else ()
    calls = {item.call_id: item for item in history if isinstance(item, FunctionCallItem)}
    if previous is not None:
        for call_id in given:
            if call_id not in calls:
                raise BadRequest(
                    f"function_call_output for unknown call_id {call_id!r}", param="input"
                )
    waiting = previous.approvals if previous else {}
    for approval_id in decisions:
        if approval_id not in waiting:
            raise BadRequest(
                f"approval request {approval_id!r} is not waiting in the previous response",
                param="input",
            )
    if previous is None:
        return ()
    missing = [call_id for call_id in previous.pending if call_id not in given]
    if missing:
        raise BadRequest(
            f"the previous response waits for the output of call_id {missing[0]!r}",
            param="input",
        )
    undecided = [approval_id for approval_id in waiting if approval_id not in decisions]
    if undecided:
        raise BadRequest(
            f"the previous response waits for a decision on approval request {undecided[0]!r}: "
            "send an mcp_approval_response item",
            param="input",
        )
    return tuple((calls[waiting[approval_id]], decisions[approval_id]) for approval_id in waiting)


def _cut_by_shutdown(response: dict[str, Any]) -> dict[str, Any]:
    """A failed response whose run the service's shutdown cut."""
    response["error"] = {
        "code": "shutting_down",
        "message": "the service stopped before the response finished; send it again",
    }
    return response
