"""OpenAI Responses, from the wire: usage, finish reasons and failures; the events of a
whole (not streamed) response; and the reader of a stream's events, which follows tool
calls by output index and item id, sends what no delta brought when an item is done,
and waits for the terminal event to finish.
"""

from __future__ import annotations

from dataclasses import dataclass
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

__all__ = ["EventReader", "response_events"]

_INCOMPLETE: dict[str, FinishReason] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}
# A failed response's error codes; the others all name something wrong in the request.
_ERROR_STATUS = {"rate_limit_exceeded": 429, "server_error": 500, "vector_store_timeout": 504}
_SUMMARY_PARTS = "\n\n"


def _count(raw: Any, name: str) -> int:
    value = raw.get(name) if isinstance(raw, dict) else None
    return value if isinstance(value, int) else 0


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(
        input_tokens=_count(raw, "input_tokens"),
        output_tokens=_count(raw, "output_tokens"),
        cached_tokens=_count(raw.get("input_tokens_details"), "cached_tokens"),
        reasoning_tokens=_count(raw.get("output_tokens_details"), "reasoning_tokens"),
    )


def _finish(response: dict[str, Any], called_tools: bool) -> Finish:
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details") or {}
        reason = _INCOMPLETE.get(details.get("reason") or "", "length")
    else:
        reason = "tool_calls" if called_tools else "stop"
    return Finish(reason, _usage(response.get("usage")))


def _failure(provider: str, error: Any) -> ProviderError:
    """The error of a failed response, or of an `error` event (`{code, message}` both)."""
    error = error if isinstance(error, dict) else {"message": str(error or "unknown error")}
    code = error.get("code") if isinstance(error.get("code"), str) else ""
    status = _ERROR_STATUS.get(code, 400) if code else 502
    return error_from(provider, status, orjson.dumps({"error": error}))


def _new_call_id() -> str:
    return f"call_{ULID()}"


def _texts(parts: Any, *kinds: str) -> list[str]:
    """The texts of a list of parts of these kinds (`{type, text}`, or `{type, refusal}`)."""
    texts: list[str] = []
    for part in parts if isinstance(parts, list) else []:
        if isinstance(part, dict) and part.get("type") in kinds:
            text = part.get("text") if part.get("type") != "refusal" else part.get("refusal")
            if isinstance(text, str) and text:
                texts.append(text)
    return texts


def _reasoning(item: dict[str, Any], *, summary: bool) -> list[ModelEvent]:
    text = _SUMMARY_PARTS.join(_texts(item.get("summary"), "summary_text")) if summary else ""
    opaque = item.get("encrypted_content") or None
    return [ReasoningDelta(text, opaque=opaque)] if text or opaque else []


def response_events(answer: Any, provider: str) -> list[ModelEvent]:
    """The events of a whole (not streamed) response."""
    if not isinstance(answer, dict):
        raise ProviderError(f"provider {provider!r} answered without a response", status=502)
    if answer.get("status") == "failed" or answer.get("error"):
        raise _failure(provider, answer.get("error"))
    output = answer.get("output")
    if not isinstance(output, list):
        raise ProviderError(f"provider {provider!r} answered without output", status=502)
    events: list[ModelEvent] = []
    called_tools = False
    for index, item in enumerate(output):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            text = "".join(_texts(item.get("content"), "output_text", "refusal"))
            events.extend([TextDelta(text)] if text else [])
        elif kind == "function_call":
            called_tools = True
            call_id = item.get("call_id") or _new_call_id()
            events.append(ToolCallStart(index, call_id, item.get("name") or ""))
            if item.get("arguments"):
                events.append(ToolCallDelta(index, item["arguments"]))
        elif kind == "reasoning":
            events.extend(_reasoning(item, summary=True))
    events.append(_finish(answer, called_tools))
    return events


@dataclass
class _Call:
    index: int
    has_arguments: bool = False


def _arguments(call: _Call | None, text: Any, *, done: bool = False) -> list[ModelEvent]:
    """A call's arguments: a delta, or all of them when done (unless deltas brought them)."""
    if call is None or not isinstance(text, str) or not text or (done and call.has_arguments):
        return []
    call.has_arguments = True
    return [ToolCallDelta(call.index, text)]


class EventReader:
    """Reads a stream's events; the finish waits for the terminal one."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._calls: dict[int, _Call] = {}  # by output_index
        self._item_calls: dict[str, _Call] = {}  # by item_id
        self._streamed: set[str] = set()  # items whose text or summary came as deltas
        self._finish: Finish | None = None

    @property
    def done(self) -> bool:
        return self._finish is not None

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
        match event.get("type") or name:
            case "error":
                raise _failure(self._provider, event.get("error") or event)
            case "response.failed":
                raise _failure(self._provider, (event.get("response") or {}).get("error"))
            case "response.output_text.delta" | "response.refusal.delta":
                return self._text(event, TextDelta)
            case "response.reasoning_summary_text.delta":
                return self._text(event, ReasoningDelta)
            case "response.reasoning_summary_part.added" if event.get("summary_index"):
                return [ReasoningDelta(_SUMMARY_PARTS)]
            case "response.output_item.added":
                return self._item_added(event)
            case "response.function_call_arguments.delta":
                return _arguments(self._call(event, event.get("item_id")), event.get("delta"))
            case "response.function_call_arguments.done":
                call = self._call(event, event.get("item_id"))
                return _arguments(call, event.get("arguments"), done=True)
            case "response.output_item.done":
                return self._item_done(event)
            case "response.completed" | "response.incomplete":
                response = event.get("response")
                response = response if isinstance(response, dict) else {}
                self._finish = _finish(response, called_tools=bool(self._calls))
        return []

    def _text(
        self, event: dict[str, Any], kind: type[TextDelta | ReasoningDelta]
    ) -> list[ModelEvent]:
        delta = event.get("delta")
        if not isinstance(delta, str) or not delta:
            return []
        if isinstance(event.get("item_id"), str):
            self._streamed.add(event["item_id"])
        return [kind(delta)]

    def _item_added(self, event: dict[str, Any]) -> list[ModelEvent]:
        item = event.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return []
        return self._start(event, item)

    def _start(self, event: dict[str, Any], item: dict[str, Any]) -> list[ModelEvent]:
        raw_index = event.get("output_index")
        call = _Call(raw_index if isinstance(raw_index, int) else len(self._calls))
        self._calls[call.index] = call
        if isinstance(item.get("id"), str):
            self._item_calls[item["id"]] = call
        events: list[ModelEvent] = [
            ToolCallStart(call.index, item.get("call_id") or _new_call_id(), item.get("name") or "")
        ]
        if isinstance(item.get("arguments"), str) and item["arguments"]:
            call.has_arguments = True
            events.append(ToolCallDelta(call.index, item["arguments"]))
        return events

    def _call(self, event: dict[str, Any], item_id: Any) -> _Call | None:
        index = event.get("output_index")
        call = self._calls.get(index) if isinstance(index, int) else None
        return call or (self._item_calls.get(item_id) if isinstance(item_id, str) else None)

    def _item_done(self, event: dict[str, Any]) -> list[ModelEvent]:
        item = event.get("item")
        if not isinstance(item, dict):
            return []
        item_id = item.get("id")
        match item.get("type"):
            case "function_call":
                call = self._call(event, item_id)
                if call is None:
                    return self._start(event, item)
                return _arguments(call, item.get("arguments"), done=True)
            case "reasoning":
                return _reasoning(item, summary=self._unstreamed(item_id))
            case "message" if self._unstreamed(item_id):
                text = "".join(_texts(item.get("content"), "output_text", "refusal"))
                return [TextDelta(text)] if text else []
        return []

    def _unstreamed(self, item_id: Any) -> bool:
        """Whether no delta brought an item's text (a server that sends whole items only)."""
        return isinstance(item_id, str) and item_id not in self._streamed

    def finish(self) -> Finish:
        if self._finish is None:
            raise ProviderError(
                f"provider {self._provider!r} closed the stream before the turn ended",
                status=502,
                code="provider_stream_broken",
            )
        return self._finish
