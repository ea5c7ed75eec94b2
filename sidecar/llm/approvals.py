"""Tool calls that wait for the user's approval (RESPONSES.md §7), after OpenAI's MCP approvals.

A call of a tool that requires approval does not run: the run ends with
`requires_action` and an output item

    {"type": "mcp_approval_request", "id": "mcpr_…", "server_label", "name", "arguments"}

and the client continues (`previous_response_id`) with one input item per request

    {"type": "mcp_approval_response", "approval_request_id": "mcpr_…", "approve": bool,
     "reason"?: str}

An approved call runs before the model's next turn; a rejected one goes back to the
model as an error it can read (`rejected`, with the reason). Where the caller can ask
the user during the run (MCP elicitation), an `Approver` decides at once instead.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.errors import BadRequest
from sidecar.llm.items import FunctionCallItem, FunctionOutputItem

__all__ = [
    "APPROVAL_REQUEST",
    "APPROVAL_RESPONSE",
    "Approver",
    "Decision",
    "approval_request_item",
    "parse_decisions",
    "refusal",
]

APPROVAL_REQUEST = "mcp_approval_request"
APPROVAL_RESPONSE = "mcp_approval_response"


@dataclass(frozen=True)
class Decision:
    """The user's answer to one approval request."""

    approve: bool
    reason: str | None = None


# Asked for each call that needs approval: the decision, or None when nobody can be asked.
Approver = Callable[[FunctionCallItem, str], Awaitable[Decision | None]]


def approval_request_item(
    approval_id: str, call: FunctionCallItem, server_label: str | None
) -> dict[str, Any]:
    """The output item that asks the client to approve a call."""
    return {
        "type": APPROVAL_REQUEST,
        "id": approval_id,
        "server_label": server_label or "sidecar",
        "name": call.name,
        "arguments": call.arguments,
    }


def parse_decisions(raw: str | Sequence[Mapping[str, Any]]) -> dict[str, Decision]:
    """The approval responses among the request's input items, by approval request id."""
    if isinstance(raw, str):
        return {}
    decisions: dict[str, Decision] = {}
    for index, entry in enumerate(raw):
        if entry.get("type") != APPROVAL_RESPONSE:
            continue
        where = f"input.{index}"
        approval_id = entry.get("approval_request_id")
        if not isinstance(approval_id, str) or not approval_id:
            raise BadRequest(
                f"{where}: an approval response names its approval_request_id",
                param=f"{where}.approval_request_id",
            )
        approve = entry.get("approve")
        if not isinstance(approve, bool):
            raise BadRequest(f"{where}.approve must be true or false", param=f"{where}.approve")
        reason = entry.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadRequest(f"{where}.reason must be a string", param=f"{where}.reason")
        if approval_id in decisions:
            raise BadRequest(
                f"{where}: approval request {approval_id!r} is answered twice", param=where
            )
        decisions[approval_id] = Decision(approve, reason)
    return decisions


def refusal(
    call: FunctionCallItem, decision: Decision
) -> tuple[FunctionOutputItem, dict[str, str]]:
    """What the model reads of a rejected call, and the error its output item shows."""
    message = "the user rejected this call"
    if decision.reason:
        message = f"{message}: {decision.reason}"
    error = {"code": "rejected", "message": message}
    return FunctionOutputItem(call.call_id, json.dumps({"error": error})), error
