"""The MCP tool `respond` (RESPONSES.md §8): the model core for MCP clients.

Arguments: `input` (text), optional `model` or `agent` (the agents are listed in the
schema), `instructions`, `previous_response_id`, `variables` (plain values; secrets
come from the face's variables file and win over a client's value of the same name;
the file's plain values are defaults the client's override)
and `approvals` (decisions on calls a previous run paused for). Without `model` or
`agent` the settings choose (`SIDECAR_RESPOND_MODEL`, `SIDECAR_RESPOND_AGENT`).

The answer is the output text as text content and the response (id, status, output,
usage, the approvals it waits for) as structured content, so a follow-up call can pass
`previous_response_id`. A client that sent a progress token hears of each model turn
and tool call; a client's cancel cancels the handler, which stops the provider call
and the tools. A call that needs approval asks the user through elicitation when the
client supports it, else the run pauses and the answer says how to decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    ClientCapabilities,
    ElicitationCapability,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    TextContent,
)

from sidecar.errors import BadRequest, SidecarError
from sidecar.llm.approvals import Decision
from sidecar.llm.items import FunctionCallItem
from sidecar.llm.responder import Responder
from sidecar.llm.responses import parse_request
from sidecar.logs import get_logger
from sidecar.mcp.catalog import FaceEntry
from sidecar.registry.agents import Agents
from tools.base import JsonObject, Secret, VariableValue

__all__ = ["RESPOND", "RespondTool"]

log = get_logger("sidecar.mcp.respond")
SESSIONLESS_REVISION = "2026-07-28"  # protocol revisions sort as dates
RESPOND = "respond"
NO_DEFAULT = (
    "respond needs a model or an agent: pass 'model' or 'agent', or set SIDECAR_RESPOND_MODEL "
    "(provider/model) or SIDECAR_RESPOND_AGENT (an agent key) for the service"
)
APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "approve": {"type": "boolean", "title": "Run this tool call?"},
        "reason": {"type": "string", "title": "Why not (optional, read by the model)"},
    },
    "required": ["approve"],
}


class RespondTool:
    """The `respond` entry of the face and the answer to its calls (a catalog source)."""

    def __init__(
        self,
        responder: Responder,
        agents: Agents | None,
        *,
        default_model: str | None = None,
        default_agent: str | None = None,
    ) -> None:
        self._responder = responder
        self._agents = agents
        self._default_model = default_model
        self._default_agent = default_agent

    async def entries(self) -> list[FaceEntry]:
        return [await self._entry()]

    async def find(self, name: str) -> FaceEntry | None:
        return await self._entry() if name == RESPOND else None

    async def _entry(self) -> FaceEntry:
        agents = await self._agents.all() if self._agents is not None else []
        agent_schema: dict[str, Any] = {
            "type": "string",
            "description": "An agent to run (its model, instructions and tools): "
            + "; ".join(
                f"{agent.definition.key}: {agent.definition.description or agent.definition.role}"
                for agent in agents
            ),
        }
        if agents:
            agent_schema["enum"] = [agent.definition.key for agent in agents]
        default = (self._default_agent and f"agent/{self._default_agent}") or self._default_model
        schema: JsonObject = {
            "type": "object",
            "properties": {
                "input": {"type": "string", "description": "The message to answer."},
                "model": {
                    "type": "string",
                    "description": "provider/model to answer with"
                    + (f" (default: {default})" if default else ""),
                },
                "agent": agent_schema,
                "instructions": {"type": "string", "description": "A system prompt to add."},
                "previous_response_id": {
                    "type": "string",
                    "description": "Continue the conversation of an earlier answer (its id).",
                },
                "variables": {
                    "type": "object",
                    "description": "Plain values for the instructions' and tools' {{names}}.",
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                },
                "approvals": {
                    "type": "array",
                    "description": "Decisions on the tool calls an earlier answer waits for.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "approval_request_id": {"type": "string"},
                            "approve": {"type": "boolean"},
                            "reason": {"type": "string"},
                        },
                        "required": ["approval_request_id", "approve"],
                    },
                },
            },
        }
        return FaceEntry(
            name=RESPOND,
            title="Ask a model or an agent",
            description=(
                "Answer a message with a model or an agent of this service, which runs the "
                "tools it needs server-side. Returns the answer text, and the response "
                "(id, status, output, usage) to continue with previous_response_id."
            ),
            input_schema=schema,
            target=self,
        )

    async def answer(
        self,
        params: CallToolRequestParams,
        variables: Mapping[str, VariableValue],
        ctx: ServerRequestContext[Any],
    ) -> CallToolResult | InputRequiredResult:
        """Run the core for one call of `respond` (or a retry carrying the user's answers)."""
        arguments = dict(params.arguments or {})
        if params.request_state is not None:
            # A retry of a run that paused for approvals (2026 multi-round-trip): the
            # state is the paused response; the answers decide its calls.
            arguments = {
                **{name: value for name, value in arguments.items() if name not in ("input",)},
                "previous_response_id": params.request_state,
                "approvals": _decisions(params.input_responses or {}),
            }
        try:
            request = parse_request(self._body(arguments, variables))
        except SidecarError as exc:
            return _error(exc.code, exc.message)
        asker = _Elicitor(ctx)
        try:
            response = await self._responder.respond(
                request, approver=asker.decide, progress=_Progress(ctx).note
            )
        except SidecarError as exc:  # messages are redacted by the responder
            return _error(exc.code, exc.message)
        waiting = _waiting(response)
        if waiting and asker.can_take_input_requests:
            return InputRequiredResult(
                input_requests={item["id"]: _approval_question(item) for item in waiting},
                request_state=response["id"],
            )
        return _result(response)

    def _body(
        self, arguments: JsonObject, variables: Mapping[str, VariableValue]
    ) -> dict[str, Any]:
        known = {"input", "model", "agent", "instructions", "previous_response_id", "variables"}
        unknown = sorted(set(arguments) - known - {"approvals"})
        if unknown:
            raise BadRequest(f"respond takes no argument {unknown[0]!r}", param="arguments")
        model = arguments.get("model")
        agent = arguments.get("agent")
        if model and agent:
            raise BadRequest("pass either 'model' or 'agent', not both", param="arguments")
        if agent:
            model = f"agent/{agent}"
        elif not model:
            if self._default_agent:
                model = f"agent/{self._default_agent}"
            elif self._default_model:
                model = self._default_model
            else:
                raise BadRequest(NO_DEFAULT, code="respond_not_configured", param="model")
        plain = arguments.get("variables") or {}
        if not isinstance(plain, dict) or any(
            isinstance(value, dict | list) for value in plain.values()
        ):
            raise BadRequest(
                "variables are plain values (strings, numbers, booleans)", param="arguments"
            )
        body: dict[str, Any] = {
            "model": model,
            "input": _input(arguments),
            "variables": _merged_variables(plain, variables) or None,
        }
        for name in ("instructions", "previous_response_id"):
            if arguments.get(name) is not None:
                body[name] = arguments[name]
        return body


def _input(arguments: JsonObject) -> str | list[dict[str, Any]]:
    text = arguments.get("input") or ""
    approvals = arguments.get("approvals") or []
    if not isinstance(text, str) or not isinstance(approvals, list):
        raise BadRequest("input is text and approvals a list of decisions", param="arguments")
    if not approvals:
        return text
    items: list[dict[str, Any]] = [
        {"type": "mcp_approval_response", **entry} if isinstance(entry, dict) else {}
        for entry in approvals
    ]
    if text:
        items.append({"role": "user", "content": text})
    return items


def _merged_variables(
    plain: Mapping[str, Any], variables: Mapping[str, VariableValue]
) -> dict[str, Any]:
    """The face's variables under the client's plain values, its secrets over them (as a
    request carries them: secrets marked as such)."""
    secrets = {
        name: {"secret": True, "value": value.reveal()}
        for name, value in variables.items()
        if isinstance(value, Secret)
    }
    defaults = {name: value for name, value in variables.items() if not isinstance(value, Secret)}
    return {**defaults, **plain, **secrets}


class _Progress:
    """Progress notifications to a client that sent a progress token; nothing otherwise."""

    def __init__(self, ctx: ServerRequestContext[Any]) -> None:
        meta: Mapping[str, object] = ctx.meta or {}
        token = meta.get("progress_token", meta.get("progressToken"))
        self._token = token if isinstance(token, str | int) else None
        self._ctx = ctx
        self._count = 0

    async def note(self, message: str) -> None:
        if self._token is None:
            return
        self._count += 1
        try:
            await self._ctx.session.send_progress_notification(
                self._token,
                float(self._count),
                message=message,
                related_request_id=str(self._ctx.request_id),
            )
        except (MCPError, OSError) as exc:  # progress is a courtesy: never fail the run
            log.info("mcp.progress_not_sent", error=type(exc).__name__)


class _Elicitor:
    """Asks the user to approve a call through elicitation, where the client can.

    On a connection with a back-channel (2025-era sessions) the question goes out while
    the run waits. Without one (the sessionless 2026 revision) the run pauses, and the
    question goes back as the call's `InputRequiredResult`: the client asks the user
    and retries the call with the answers, which continue the paused response.
    """

    def __init__(self, ctx: ServerRequestContext[Any]) -> None:
        self._ctx = ctx
        wanted = ClientCapabilities(elicitation=ElicitationCapability())
        self.can_elicit = ctx.session.check_client_capability(wanted)
        self.has_back_channel = ctx.protocol_version < SESSIONLESS_REVISION

    @property
    def can_take_input_requests(self) -> bool:
        """Whether the client can be handed the approval questions with the result."""
        return self.can_elicit and not self.has_back_channel

    async def decide(self, call: FunctionCallItem, kind: str) -> Decision | None:
        if not (self.can_elicit and self.has_back_channel):
            return None
        try:
            answer = await self._ctx.session.elicit_form(
                _question(call.name, call.arguments),
                APPROVAL_SCHEMA,
                related_request_id=self._ctx.request_id,
            )
        except MCPError as exc:  # no back-channel after all: pause instead
            log.info("mcp.elicitation_unavailable", error=exc.error.message)
            return None
        return _decision(answer)


def _question(name: str, arguments: str) -> str:
    return f"The model wants to run the tool {name!r} with {arguments}. Allow it?"


def _approval_question(item: dict[str, Any]) -> ElicitRequest:
    """An approval request of a paused run, as an elicitation the client puts to the user."""
    return ElicitRequest(
        params=ElicitRequestFormParams(
            message=_question(item["name"], item["arguments"]),
            requested_schema=APPROVAL_SCHEMA,
        )
    )


def _decision(answer: ElicitResult) -> Decision:
    if answer.action != "accept":
        return Decision(False, f"the user chose to {answer.action} the request")
    content = answer.content or {}
    reason = content.get("reason")
    return Decision(content.get("approve") is True, reason if isinstance(reason, str) else None)


def _decisions(responses: Mapping[str, object]) -> list[dict[str, Any]]:
    """The client's answers to the approval questions, as approval decisions."""
    decisions: list[dict[str, Any]] = []
    for approval_id, answer in responses.items():
        decided = (
            _decision(answer)
            if isinstance(answer, ElicitResult)
            else Decision(False, "the client did not answer the question")
        )
        entry: dict[str, Any] = {"approval_request_id": approval_id, "approve": decided.approve}
        if decided.reason:
            entry["reason"] = decided.reason
        decisions.append(entry)
    return decisions


def _waiting(response: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in response["output"] if item["type"] == "mcp_approval_request"]


def _result(response: dict[str, Any]) -> CallToolResult:
    waiting = _waiting(response)
    structured = {
        name: response.get(name)
        for name in ("id", "status", "model", "output", "output_text", "usage", "error")
    }
    if response.get("incomplete_details"):
        structured["incomplete_details"] = response["incomplete_details"]
    if response["status"] == "failed":
        error = response.get("error") or {}
        text = f"{error.get('code', 'failed')}: {error.get('message', 'the response failed')}"
        return CallToolResult(
            content=[TextContent(text=text)], structured_content=structured, is_error=True
        )
    text = response.get("output_text") or ""
    if waiting:
        calls = ", ".join(
            f"{item['name']}({item['arguments']}) [approval_request_id {item['id']}]"
            for item in waiting
        )
        text = (f"{text}\n\n" if text else "") + (
            f"Waiting for approval of: {calls}. Call respond again with previous_response_id "
            f"{response['id']!r} and approvals [{{approval_request_id, approve, reason?}}]."
        )
    if response["status"] == "incomplete" and not text:
        reason = (response.get("incomplete_details") or {}).get("reason")
        text = f"The response is incomplete ({reason})."
    return CallToolResult(content=[TextContent(text=text)], structured_content=structured)


def _error(code: str, message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=f"{code}: {message}")], is_error=True)
