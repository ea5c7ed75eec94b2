"""The response object as the service answers, streams and stores it (RESPONSES.md §3).

Besides the fields of the contract it carries those orq's SDK requires (`background`,
`service_tier`, `truncation`, the sampling fields as numbers, the prompt-cache fields,
`input` as items), with neutral values, so that `orq.responses.create` parses it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.llm.approvals import Decision
from sidecar.llm.items import FunctionCallItem, Item
from sidecar.llm.loop import Run, RunResult
from sidecar.llm.responses import ResponseRequest
from sidecar.redaction import Redactor
from tools.base import Secret, VariableValue

__all__ = ["Prepared", "response_object"]


@dataclass
class Prepared:
    """A checked request, resolved for its run, and what its response echoes."""

    request: ResponseRequest
    run: Run
    redactor: Redactor
    response_id: str
    created_at: int
    history: tuple[Item, ...]
    instructions: str | None
    variables: Mapping[str, VariableValue]
    label: str  # "provider/model" asked for
    # Calls of the previous response that this one decided (approved or rejected), where
    # their outputs go in the history, and their output items once they ran.
    decided: tuple[tuple[FunctionCallItem, Decision], ...] = ()
    resumed_at: int = 0
    resumed: list[dict[str, Any]] = field(default_factory=list)


def response_object(
    prepared: Prepared,
    output: list[dict[str, Any]],
    status: str,
    result: RunResult | None,
) -> dict[str, Any]:
    """The response object (RESPONSES.md §3) of a run as it is now; `result` once it ended."""
    request = prepared.request
    redact = prepared.redactor.redact
    usage = result.usage if result else None
    response: dict[str, Any] = {
        "id": prepared.response_id,
        "object": "response",
        "created_at": prepared.created_at,
        "completed_at": int(time.time()) if result and status != "in_progress" else None,
        "status": status,
        "model": result.model if result else prepared.label,
        "previous_response_id": request.previous_response_id,
        "instructions": redact(prepared.instructions) if prepared.instructions else None,
        "input": _echoed_input(request.input, redact),
        "output": list(output),
        "output_text": "".join(
            part["text"]
            for item in output
            if item.get("type") == "message"
            for part in item.get("content", [])
            if part.get("type") == "output_text"
        ),
        "tools": [_echoed_tool(tool) for tool in request.tools],
        "tool_choice": request.tool_choice or "auto",
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "max_tool_calls": request.max_tool_calls,
        "text": request.text.model_dump(by_alias=True, exclude_none=True)
        if request.text
        else {"format": {"type": "text"}},
        "reasoning": request.reasoning.model_dump() if request.reasoning else None,
        # Sampling as asked, else the providers' usual defaults (orq's SDK wants numbers).
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "top_logprobs": 0,
        "max_output_tokens": request.max_output_tokens,
        "store": request.store,
        "background": False,
        "service_tier": "default",
        "truncation": "disabled",
        "user": request.user,
        "safety_identifier": request.safety_identifier,
        "prompt_cache_key": request.prompt_cache_key,
        "prompt_cache_options": None,
        "prompt_cache_retention": None,
        "metadata": request.metadata or {},
        "usage": None
        if usage is None
        else {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {
                "cached_tokens": usage.cached_tokens,
                "cache_creation_tokens": 0,
                "cache_write_tokens": 0,
            },
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "total_cost": round(result.cost, 8) if result else 0.0,
        },
        "error": {**result.error, "message": redact(result.error["message"])}
        if result and result.error
        else None,
        "incomplete_details": {"reason": result.incomplete_reason}
        if result and result.incomplete_reason
        else None,
        "variables": _echoed(prepared.variables),
    }
    for name in ("tags", "identity", "thread"):
        value = getattr(request, name)
        if value is not None:
            response[name] = value
    return response


def _echoed_tool(entry: dict[str, Any] | str) -> dict[str, Any] | str:
    """A `tools[]` entry as given; a flat function tool with its `strict` (null when unset)."""
    if isinstance(entry, dict) and entry.get("type") == "function" and "name" in entry:
        return {"strict": None, **entry}
    return entry


def _echoed_input(raw: str | list[dict[str, Any]], redact: Callable[[str], str]) -> list[Any]:
    """The request's input as items (a string is one user message), redacted."""
    items: list[Any] = (
        [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
        if isinstance(raw, str)
        else raw
    )
    echoed: list[Any] = json.loads(redact(json.dumps(items, ensure_ascii=False)))
    return echoed


def _echoed(variables: Mapping[str, VariableValue]) -> dict[str, Any]:
    """Plain values as they are; a secret as `{"secret": true}`, without its value."""
    return {
        name: {"secret": True} if isinstance(value, Secret) else value
        for name, value in variables.items()
    }
