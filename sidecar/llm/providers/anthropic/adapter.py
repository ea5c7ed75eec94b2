"""Anthropic Messages (`POST /v1/messages`): Claude on Anthropic's API, and the servers
that speak its wire.

To the wire: the instructions and every system or developer message joined into the
top-level `system`; user and assistant messages as content blocks (`text`, `image` with
a `base64` source for `data:` URLs and a `url` source otherwise); a model's tool calls
as assistant `tool_use` blocks (the arguments parsed: `input` is an object); tool
outputs as `tool_result` blocks of a user message; Anthropic's own reasoning (a summary
with its signature) as a `thinking` block, other providers' reasoning dropped. Roles
must alternate, so consecutive messages of one role are joined into one (a turn's
thinking first, then its text and tool calls; a user message's tool results first, then
its text). Call ids outside `[A-Za-z0-9_-]` are rewritten the same way on the call and
its result. `max_tokens` is always sent; tools as `{name, description, input_schema}`
(`strict` is not sent: the wire rejects fields it does not know); `required` is `any`
and a named tool `tool`; `parallel_tool_calls: false` is `disable_parallel_tool_use`;
`stop` is `stop_sequences`; a temperature above 1 (OpenAI's scale reaches 2) is sent as 1.

From the wire: `text` blocks as text, `tool_use` blocks as tool calls (the content
block's index is the call's index; the input as JSON text, `{}` when empty), `thinking`
blocks as reasoning with the signature as its opaque part (`redacted_thinking` is not
kept); the stream's `message_start` (input usage), `content_block_*` (`text_delta`,
`input_json_delta`, `thinking_delta`, `signature_delta`), `message_delta` (stop reason,
output usage), `message_stop` (the turn is over), `ping` ignored, `error` a
`ProviderError` (`overloaded_error` is 529, retryable). A stream that ends before
`message_stop` is a `ProviderError`. Input usage counts cache reads and writes too.

Where the formats disagree:

- Reasoning effort is a thinking budget: `minimal` 1,024 tokens (the least Anthropic
  takes), `low` 2,048, `medium` 8,192, `high` 16,384; `none` turns thinking off; any
  other effort is a `ProviderError`. Anthropic counts thinking in `max_tokens`, so
  without `max_output_tokens` the budget is added to the default (the answer keeps its
  room); with it, the budget is at most half of it, and thinking is off when that half
  is under 1,024. Thinking takes neither a temperature (dropped) nor a `top_p` under
  0.95 (dropped), and is off when tool use is forced (Anthropic refuses both at once)
  or when the conversation's last assistant turn called tools without a thinking block
  (as after a fallback from another provider: Anthropic refuses to think then).
- A JSON schema becomes a tool named as the schema, whose input is the answer (the
  classic wire has no `response_format`; a forced tool's input is checked against its
  schema, which keeps answers in shape where a prompt alone would not, and a fallback
  from another provider keeps working). Tool use is forced: that tool when the request
  has no tools or its tool choice is `none`, any tool otherwise (or the named one). Its
  input comes back as the turn's text, and a turn that only answered finishes as
  `stop`. A request tool with the schema's name is a `ProviderError`.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import replace
from typing import Any, cast

import httpx
import orjson
from ulid import ULID

from sidecar.llm.items import (
    FunctionCallItem,
    FunctionOutputItem,
    ImagePart,
    MessageItem,
    ReasoningItem,
    TextPart,
    text_of,
)
from sidecar.llm.providers.base import (
    Finish,
    FinishReason,
    ModelEvent,
    ModelRequest,
    NamedTool,
    ProviderError,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from sidecar.llm.providers.http import Endpoint, error_from, post_json, post_stream
from sidecar.llm.providers.sse import ServerEvent
from tools.base import FunctionDefinition

__all__ = ["AnthropicMessages"]

_PATH = "/v1/messages"
_VERSION = "2023-06-01"
_PROVIDER = "anthropic"
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}
_BUDGETS = {"none": 0, "minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}
_MIN_BUDGET = 1024
_MIN_THINKING_TOP_P = 0.95
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")
_ANSWER = (
    "Give your final answer by calling this tool once: its input is the answer, "
    "in the structure its schema describes."
)


class AnthropicMessages:
    """A Messages API provider."""

    reasoning_provider = _PROVIDER  # what its `ReasoningItem`s carry as `provider`

    def __init__(
        self, client: httpx.AsyncClient, endpoint: Endpoint, *, max_tokens_default: int = 4096
    ) -> None:
        self._client = client
        self._endpoint = _with_version(endpoint)
        self._max_tokens_default = max_tokens_default

    async def stream(
        self, request: ModelRequest, *, streaming: bool = True
    ) -> AsyncIterator[ModelEvent]:
        body = _body(request, self._max_tokens_default, streaming)
        answer_tool = request.json_schema[0] if request.json_schema is not None else None
        if not streaming:
            answer = await post_json(
                self._client, self._endpoint, _PATH, body, seconds=request.timeout
            )
            for whole in _message_events(answer, self._endpoint.name, answer_tool):
                yield whole
            return
        reader = _EventReader(self._endpoint.name, answer_tool)
        # `post_stream` is an async generator: closed here, the answer is closed at once.
        events = post_stream(self._client, self._endpoint, _PATH, body, seconds=request.timeout)
        async with aclosing(cast(AsyncGenerator[ServerEvent, None], events)) as server_events:
            async for server_event in server_events:
                for model_event in reader.read(server_event.event, server_event.data):
                    yield model_event
                if reader.done:
                    break
        yield reader.finish()


def _with_version(endpoint: Endpoint) -> Endpoint:
    if any(name.lower() == "anthropic-version" for name in endpoint.headers):
        return endpoint
    return replace(endpoint, headers={**endpoint.headers, "anthropic-version": _VERSION})


def _body(request: ModelRequest, max_tokens_default: int, streaming: bool) -> dict[str, Any]:
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
                if provider == _PROVIDER and opaque:
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


def _count(raw: dict[str, Any], name: str) -> int:
    value = raw.get(name)
    return value if isinstance(value, int) else 0


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    cache_read = _count(raw, "cache_read_input_tokens")
    return Usage(
        input_tokens=_count(raw, "input_tokens")
        + cache_read
        + _count(raw, "cache_creation_input_tokens"),
        output_tokens=_count(raw, "output_tokens"),
        cached_tokens=cache_read,
    )


def _finish(stop_reason: Any, called_tools: bool) -> FinishReason:
    reason = _FINISH.get(stop_reason if isinstance(stop_reason, str) else "end_turn", "stop")
    return "stop" if reason == "tool_calls" and not called_tools else reason


def _new_call_id() -> str:
    return f"toolu_{ULID()}"


def _error(provider: str, body: Any, content: bytes) -> ProviderError:
    """The error of an `error` body (a stream's event, or a 200 answer's)."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return error_from(provider, _ERROR_STATUS.get(kind or "", 502), content)


def _message_events(answer: Any, provider: str, answer_tool: str | None) -> list[ModelEvent]:
    """The events of a whole (not streamed) message."""
    if isinstance(answer, dict) and answer.get("type") == "error":
        raise _error(provider, answer, orjson.dumps(answer))
    content = answer.get("content") if isinstance(answer, dict) else None
    if not isinstance(content, list):
        raise ProviderError(f"provider {provider!r} answered without content", status=502)
    events: list[ModelEvent] = []
    called_tools = False
    for index, block in enumerate(content):
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str) and block["text"]:
            events.append(TextDelta(block["text"]))
        elif kind == "thinking":
            events.append(
                ReasoningDelta(block.get("thinking") or "", opaque=block.get("signature") or None)
            )
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if answer_tool is not None and block.get("name") == answer_tool:
                events.append(TextDelta(arguments))
                continue
            called_tools = True
            call_id = block.get("id") or _new_call_id()
            events.append(ToolCallStart(index, call_id, block.get("name") or ""))
            events.append(ToolCallDelta(index, arguments))
    reason = _finish(answer.get("stop_reason"), called_tools)
    events.append(Finish(reason, _usage(answer.get("usage"))))
    return events


class _EventReader:
    """Reads a stream's events; the finish waits for `message_stop`."""

    def __init__(self, provider: str, answer_tool: str | None) -> None:
        self._provider = provider
        self._answer_tool = answer_tool
        self._answer_blocks: set[int] = set()
        self._called_tools = False
        self._usage: dict[str, Any] = {}
        self._stop_reason: Any = None
        self.done = False

    def read(self, name: str, data: str) -> list[ModelEvent]:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProviderError(
                f"provider {self._provider!r} sent an event that is not JSON", status=502
            ) from None
        if not isinstance(event, dict):
            return []
        kind = event.get("type") or name
        index = event["index"] if isinstance(event.get("index"), int) else 0
        match kind:
            case "error":
                raise _error(self._provider, event, data.encode())
            case "message_start":
                self._add_usage((event.get("message") or {}).get("usage"))
            case "content_block_start":
                return self._start(index, event.get("content_block") or {})
            case "content_block_delta":
                return self._delta(index, event.get("delta") or {})
            case "message_delta":
                self._stop_reason = (event.get("delta") or {}).get("stop_reason")
                self._add_usage(event.get("usage"))
            case "message_stop":
                self.done = True
        return []

    def _add_usage(self, raw: Any) -> None:
        """`message_delta` repeats counts cumulatively: the last one of each wins."""
        if isinstance(raw, dict):
            self._usage.update({key: value for key, value in raw.items() if type(value) is int})

    def _start(self, index: int, block: dict[str, Any]) -> list[ModelEvent]:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [TextDelta(block["text"])]
        if kind == "thinking" and block.get("thinking"):
            return [ReasoningDelta(block["thinking"])]
        if kind != "tool_use":
            return []
        name = block.get("name") or ""
        if self._answer_tool is not None and name == self._answer_tool:
            self._answer_blocks.add(index)
            return []
        self._called_tools = True
        events: list[ModelEvent] = [ToolCallStart(index, block.get("id") or _new_call_id(), name)]
        if block.get("input"):  # streamed inputs come as deltas; a whole one here is rare
            events.append(ToolCallDelta(index, orjson.dumps(block["input"]).decode()))
        return events

    def _delta(self, index: int, delta: dict[str, Any]) -> list[ModelEvent]:
        match delta.get("type"):
            case "text_delta" if delta.get("text"):
                return [TextDelta(delta["text"])]
            case "input_json_delta" if delta.get("partial_json"):
                if index in self._answer_blocks:
                    return [TextDelta(delta["partial_json"])]
                return [ToolCallDelta(index, delta["partial_json"])]
            case "thinking_delta" if delta.get("thinking"):
                return [ReasoningDelta(delta["thinking"])]
            case "signature_delta" if delta.get("signature"):
                return [ReasoningDelta(opaque=delta["signature"])]
        return []

    def finish(self) -> Finish:
        if not self.done:
            raise ProviderError(
                f"provider {self._provider!r} closed the stream before the turn ended",
                status=502,
                code="provider_stream_broken",
            )
        return Finish(_finish(self._stop_reason, self._called_tools), _usage(self._usage))
