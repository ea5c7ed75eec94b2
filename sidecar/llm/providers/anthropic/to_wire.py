"""Anthropic Messages, to the wire: the request body made of a `ModelRequest` (the
system text; messages of content blocks, one per run of a role; the tools, with the tool
that carries a JSON-schema answer; the tool choice; the thinking budget, and what it
changes in `max_tokens`, the temperature and `top_p`), and the name the provider's
reasoning carries.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from typing import Any

import orjson

from sidecar.llm.items import (
    FunctionCallItem,
    FunctionOutputItem,
    ImagePart,
    MessageItem,
    ReasoningItem,
    TextPart,
    text_of,
)
from sidecar.llm.providers.base import ModelRequest, NamedTool, ProviderError
from tools.base import FunctionDefinition

__all__ = ["PROVIDER", "body"]

PROVIDER = "anthropic"
_BUDGETS = {"none": 0, "minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}
_MIN_BUDGET = 1024
_MIN_THINKING_TOP_P = 0.95
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")
_ANSWER = (
    "Give your final answer by calling this tool once: its input is the answer, "
    "in the structure its schema describes."
)


def body(request: ModelRequest, max_tokens_default: int, streaming: bool) -> dict[str, Any]:
    system, messages = _messages(request)
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if system:
        body["system"] = system
    tools = [_tool(tool) for tool in request.tools]
    answer_tool = None
    if request.json_schema is not None:
        answer_tool, schema, _strict = request.json_schema
        if any(tool.name == answer_tool for tool in request.tools):
            raise ProviderError(
                f"a tool is named {answer_tool!r} like the answer's JSON schema, which "
                "Anthropic's wire sends as a tool",
                code="unsupported_request",
            )
        tools.append({"name": answer_tool, "description": _ANSWER, "input_schema": schema})
    if tools:
        body["tools"] = tools
    choice = _tool_choice(request, answer_tool)
    if choice is not None:
        body["tool_choice"] = choice
    budget = _budget(request.reasoning_effort)
    if budget and (_forces_tool_use(choice) or _unthought_tool_use(messages)):
        budget = 0
    if request.max_output_tokens is not None:
        body["max_tokens"] = request.max_output_tokens
        budget = min(budget, request.max_output_tokens // 2)
        budget = budget if budget >= _MIN_BUDGET else 0
    else:
        body["max_tokens"] = max_tokens_default + budget
    if budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if request.temperature is not None and not budget:
        body["temperature"] = min(request.temperature, 1.0)
    if request.top_p is not None and (not budget or request.top_p >= _MIN_THINKING_TOP_P):
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if streaming:
        body["stream"] = True
    return body


def _tool(tool: FunctionDefinition) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def _tool_choice(request: ModelRequest, answer_tool: str | None) -> dict[str, Any] | None:
    requested = request.tool_choice
    choice: dict[str, Any] | None
    if not request.tools and answer_tool is None:
        return None  # a tool choice without tools is refused
    if answer_tool is not None and (not request.tools or requested == "none"):
        choice = {"type": "tool", "name": answer_tool}
    elif isinstance(requested, NamedTool):
        choice = {"type": "tool", "name": requested.name}
    elif answer_tool is not None or requested == "required":
        choice = {"type": "any"}
    elif requested is not None:
        choice = {"type": requested}
    elif request.parallel_tool_calls is False:
        choice = {"type": "auto"}
    else:
        return None
    if request.parallel_tool_calls is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    return choice


def _forces_tool_use(choice: dict[str, Any] | None) -> bool:
    return choice is not None and choice["type"] in ("any", "tool")


def _budget(effort: str | None) -> int:
    if effort is None:
        return 0
    budget = _BUDGETS.get(effort)
    if budget is None:
        raise ProviderError(
            f"reasoning effort {effort!r} is not one Anthropic's wire knows "
            f"({', '.join(_BUDGETS)})",
            code="unsupported_request",
        )
    return budget


def _unthought_tool_use(messages: list[dict[str, Any]]) -> bool:
    """Whether the last assistant turn called tools without thinking first."""
    for message in reversed(messages):
        if message["role"] == "assistant":
            blocks = message["content"]
            calls = any(block["type"] == "tool_use" for block in blocks)
            return calls and blocks[0]["type"] != "thinking"
    return False


def _messages(request: ModelRequest) -> tuple[str, list[dict[str, Any]]]:
    system = [request.instructions] if request.instructions else []
    messages: list[dict[str, Any]] = []
    for item in request.items:
        match item:
            case MessageItem("system" | "developer"):
                if text_of(item):
                    system.append(text_of(item))
            case MessageItem(role, parts):
                _add(messages, role, _blocks(parts, images=role == "user"))
            case FunctionCallItem(call_id, name, arguments):
                call = {"type": "tool_use", "id": _wire_id(call_id), "name": name}
                _add(messages, "assistant", [{**call, "input": _input(arguments)}])
            case FunctionOutputItem(call_id, output):
                result: dict[str, Any] = {"type": "tool_result", "tool_use_id": _wire_id(call_id)}
                if output:
                    result["content"] = output
                _add(messages, "user", [result])
            case ReasoningItem(summary, _, opaque, provider):
                if provider == PROVIDER and opaque:
                    thinking = {"type": "thinking", "thinking": summary, "signature": opaque}
                    _add(messages, "assistant", [thinking])
    for message in messages:
        message["content"].sort(key=_block_rank)  # stable: only moves these to the front
    return "\n\n".join(system), messages


def _add(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _block_rank(block: dict[str, Any]) -> int:
    """Thinking opens an assistant turn; tool results open a user turn."""
    return 0 if block["type"] in ("thinking", "tool_result") else 1


def _blocks(parts: tuple[TextPart | ImagePart, ...], *, images: bool) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            if part.text:  # Anthropic refuses empty text blocks
                blocks.append({"type": "text", "text": part.text})
        elif images:
            blocks.append({"type": "image", "source": _image_source(part.url)})
    return blocks


def _image_source(url: str) -> dict[str, Any]:
    if not url.startswith("data:"):
        return {"type": "url", "url": url}
    meta, _, data = url.removeprefix("data:").partition(",")
    media_type, *parameters = meta.split(";")
    if "base64" not in parameters:
        data = base64.b64encode(urllib.parse.unquote_to_bytes(data)).decode("ascii")
    return {"type": "base64", "media_type": media_type.strip().lower(), "data": data}


def _wire_id(call_id: str) -> str:
    """Anthropic takes ids of `[A-Za-z0-9_-]` only (other providers' may hold more)."""
    return _UNSAFE_ID.sub("_", call_id) or "call"


def _input(arguments: str) -> dict[str, Any]:
    """The call's arguments as an object; arguments that are not one (a model's broken
    JSON kept in the history) go as `{}`, the call's output telling what happened."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
