"""Anthropic Messages, from the wire: usage, finish reasons and errors; the events of a
whole (not streamed) message; and the reader of a stream's events, which turns the
answer tool's input back into text and waits for `message_stop` to finish.
"""

from __future__ import annotations

from typing import Any

import orjson
from ulid import ULID

from sidecar.llm.providers.base import (
    Finish,
    FinishReason,
    ModelEvent,
    ProviderError,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from sidecar.llm.providers.http import error_from
from sidecar.llm.providers.sse import ServerEvent

__all__ = ["EventReader", "message_events"]

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}
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


def message_events(answer: Any, provider: str, answer_tool: str | None) -> list[ModelEvent]:
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


class EventReader:
    """Reads a stream's events; the finish waits for `message_stop`."""

    def __init__(self, provider: str, answer_tool: str | None) -> None:
        self._provider = provider
        self._answer_tool = answer_tool
        self._answer_blocks: set[int] = set()
        self._called_tools = False
        self._usage: dict[str, Any] = {}
        self._stop_reason: Any = None
        self.done = False

    def read(self, server_event: ServerEvent) -> list[ModelEvent]:
        name, data = server_event.event, server_event.data
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
