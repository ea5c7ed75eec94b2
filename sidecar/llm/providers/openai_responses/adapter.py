"""OpenAI Responses (`POST /responses`): OpenAI, Azure OpenAI's v1 API, and the servers
that speak its wire.

To the wire: the instructions as `instructions`; messages as `message` input items
(`input_text` and `input_image` parts; the assistant's text as `output_text`, its images
dropped); a model's tool calls as `function_call` items and their outputs as
`function_call_output` items; OpenAI's own reasoning (a summary with its encrypted
content) as a `reasoning` item without an id, other providers' reasoning dropped. The
sidecar keeps the history, so `store` is always false, and the encrypted reasoning is
asked for (`include: ["reasoning.encrypted_content"]`) when the request sets a reasoning
effort or sends such reasoning back: models that do not reason refuse that include.
Tools as `{type: function, name, description, parameters, strict}` (`strict` false when
unset: this wire would make it true, and refuse most schemas); a named tool choice as
`{type: function, name}`; a JSON schema as `text.format`; a reasoning effort as
`reasoning: {effort, summary: auto}`. The wire has no stop sequences: a request with
some is a `ProviderError` (silently dropping them would change the answer).

From the wire: `message` output items as text (`output_text`, and `refusal` text),
`function_call` items as tool calls (indexed by their `output_index`, also found by
`item_id`), `reasoning` items as reasoning (the summary parts joined by a blank line;
the encrypted content as the opaque part). The stream: `response.output_text.delta`,
`response.refusal.delta`, `response.reasoning_summary_text.delta`,
`response.output_item.added` (a call's id and name), `response.function_call_arguments`
`.delta` (empty deltas skipped) and `.done` (the arguments, when no delta brought them),
`response.output_item.done` (the encrypted reasoning; what no delta brought), and the
terminal `response.completed` or `response.incomplete` (usage, finish: an incomplete
answer is `length`, or `content_filter`). `response.failed` and `error` events are a
`ProviderError`, and so is a stream that ends before its terminal event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

import httpx
import orjson
from ulid import ULID

from sidecar.llm.items import (
    FunctionCallItem,
    FunctionOutputItem,
    ImagePart,
    Item,
    MessageItem,
    ReasoningItem,
    TextPart,
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

__all__ = ["OpenAIResponses"]

_PATH = "/responses"
_PROVIDER = "openai"
_INCOMPLETE: dict[str, FinishReason] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}
# A failed response's error codes; the others all name something wrong in the request.
_ERROR_STATUS = {"rate_limit_exceeded": 429, "server_error": 500, "vector_store_timeout": 504}
_SUMMARY_PARTS = "\n\n"


class OpenAIResponses:
    """A Responses API provider."""

    reasoning_provider = _PROVIDER  # what its `ReasoningItem`s carry as `provider`

    def __init__(self, client: httpx.AsyncClient, endpoint: Endpoint) -> None:
        self._client = client
        self._endpoint = endpoint

    async def stream(
        self, request: ModelRequest, *, streaming: bool = True
    ) -> AsyncIterator[ModelEvent]:
        body = _body(request, streaming)
        if not streaming:
            answer = await post_json(
                self._client, self._endpoint, _PATH, body, seconds=request.timeout
            )
            for whole in _response_events(answer, self._endpoint.name):
                yield whole
            return
        reader = _EventReader(self._endpoint.name)
        # `post_stream` is an async generator: closed here, the answer is closed at once.
        events = post_stream(self._client, self._endpoint, _PATH, body, seconds=request.timeout)
        async with aclosing(cast(AsyncGenerator[ServerEvent, None], events)) as server_events:
            async for server_event in server_events:
                for model_event in reader.read(server_event.event, server_event.data):
                    yield model_event
                if reader.done:
                    break
        yield reader.finish()


def _body(request: ModelRequest, streaming: bool) -> dict[str, Any]:
    if request.stop:
        raise ProviderError(
            "stop sequences are not supported by the Responses wire", code="unsupported_request"
        )
    body: dict[str, Any] = {"model": request.model, "input": _input(request.items), "store": False}
    if request.instructions:
        body["instructions"] = request.instructions
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.tool_choice is not None:
        body["tool_choice"] = (
            {"type": "function", "name": request.tool_choice.name}
            if isinstance(request.tool_choice, NamedTool)
            else request.tool_choice
        )
    if request.json_schema is not None:
        name, schema, strict = request.json_schema
        body["text"] = {
            "format": {"type": "json_schema", "name": name, "schema": schema, "strict": strict}
        }
    optional = {
        "max_output_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    if request.reasoning_effort is not None:
        body["reasoning"] = {"effort": request.reasoning_effort, "summary": "auto"}
    if request.reasoning_effort is not None or any(map(_is_own_reasoning, request.items)):
        body["include"] = ["reasoning.encrypted_content"]
    if streaming:
        body["stream"] = True
    return body


def _tool(tool: FunctionDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": bool(tool.strict),
    }


def _is_own_reasoning(item: Item) -> bool:
    return isinstance(item, ReasoningItem) and item.provider == _PROVIDER and bool(item.opaque)


def _input(items: tuple[Item, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        match item:
            case MessageItem(role, parts):
                content = _content(role, parts)
                if content:
                    out.append({"type": "message", "role": role, "content": content})
            case FunctionCallItem(call_id, name, arguments):
                out.append(
                    {
                        "type": "function_call",
                        "call_id": call_id,
                        "name": name,
                        "arguments": arguments,
                    }
                )
            case FunctionOutputItem(call_id, output):
                out.append({"type": "function_call_output", "call_id": call_id, "output": output})
            case ReasoningItem(summary, _, opaque) if _is_own_reasoning(item):
                # No id: with `store: false` an id would be looked up, and not be found.
                summaries = [{"type": "summary_text", "text": summary}] if summary else []
                out.append({"type": "reasoning", "encrypted_content": opaque, "summary": summaries})
    return out


def _content(role: str, parts: tuple[TextPart | ImagePart, ...]) -> list[dict[str, Any]]:
    if role == "assistant":
        texts = [part.text for part in parts if isinstance(part, TextPart) and part.text]
        return [{"type": "output_text", "text": text} for text in texts]
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            content.append({"type": "input_text", "text": part.text})
        else:
            content.append(
                {"type": "input_image", "image_url": part.url, "detail": part.detail or "auto"}
            )
    return content


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


def _response_events(answer: Any, provider: str) -> list[ModelEvent]:
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


class _EventReader:
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

    def read(self, name: str, data: str) -> list[ModelEvent]:
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
