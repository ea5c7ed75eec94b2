"""OpenAI Chat Completions (`POST /chat/completions`): OpenAI, Groq, Together, Mistral,
vLLM, Ollama, llama.cpp's server, LM Studio, OpenRouter's chat endpoint.

To the wire: instructions as the first `system` message (`developer` becomes `system`,
which every compatible server knows), a model's tool calls as one assistant message's
`tool_calls`, tool outputs as `tool` messages, images as `image_url` parts; reasoning
is not sent back (the format has no field for it). From the wire: text, reasoning
(`reasoning_content` or `reasoning`, as DeepSeek, vLLM and OpenRouter send it), tool
calls grouped by `index` (the id and name come on a call's first chunk only; a new id
at an index already in use is another call), usage (which may come after the finish).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from ulid import ULID

from sidecar.llm.items import (
    FunctionCallItem,
    FunctionOutputItem,
    ImagePart,
    MessageItem,
    ReasoningItem,
    TextPart,
)
from sidecar.llm.providers.base import (
    Finish,
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
from sidecar.llm.providers.http import Endpoint, Transport, turn_events
from sidecar.llm.providers.sse import ServerEvent

__all__ = ["OpenAIChat"]

_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIChat:
    """A Chat Completions provider."""

    reasoning_provider = "openai-chat"  # its reasoning has no opaque part to send back

    def __init__(
        self, client: Transport, endpoint: Endpoint, *, max_tokens_field: str = "max_tokens"
    ) -> None:
        self._client = client
        self._endpoint = endpoint
        self._max_tokens_field = max_tokens_field

    async def stream(
        self, request: ModelRequest, *, streaming: bool = True
    ) -> AsyncIterator[ModelEvent]:
        body = self._body(request, streaming)
        name = self._endpoint.name
        events = turn_events(
            self._client,
            self._endpoint,
            "/chat/completions",
            body,
            seconds=request.timeout,
            streaming=streaming,
            whole=lambda answer: _completion_events(answer, name),
            reader=_ChunkReader(name),
        )
        async for event in events:
            yield event

    def _body(self, request: ModelRequest, streaming: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": _messages(request)}
        if request.tools:
            body["tools"] = [
                _tool(tool.name, tool.description, tool.parameters, tool.strict)
                for tool in request.tools
            ]
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.tool_choice is not None:
            body["tool_choice"] = (
                {"type": "function", "function": {"name": request.tool_choice.name}}
                if isinstance(request.tool_choice, NamedTool)
                else request.tool_choice
            )
        if request.json_schema is not None:
            name, schema, strict = request.json_schema
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": strict},
            }
        optional = {
            self._max_tokens_field: request.max_output_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": list(request.stop) or None,
            "reasoning_effort": request.reasoning_effort,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        if streaming:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body


def _tool(name: str, description: str, parameters: Any, strict: bool | None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "description": description, "parameters": parameters}
    if strict is not None:
        function["strict"] = strict
    return {"type": "function", "function": function}


def _messages(request: ModelRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for item in request.items:
        match item:
            case MessageItem(role, parts):
                messages.append(
                    {"role": "system" if role == "developer" else role, "content": _content(parts)}
                )
            case FunctionCallItem(call_id, name, arguments):
                call = {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
                last = messages[-1] if messages else None
                if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                    last["tool_calls"].append(call)
                elif (
                    last is not None
                    and last["role"] == "assistant"
                    and last.get("content") is not None
                ):
                    last["tool_calls"] = [call]
                else:
                    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            case FunctionOutputItem(call_id, output):
                messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
            case ReasoningItem():
                pass  # Chat Completions has no field to send reasoning back in
    return messages


def _content(parts: tuple[TextPart | ImagePart, ...]) -> str | list[dict[str, Any]]:
    if all(isinstance(part, TextPart) for part in parts):
        return "".join(part.text for part in parts if isinstance(part, TextPart))
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            out.append({"type": "text", "text": part.text})
        else:
            image: dict[str, Any] = {"url": part.url}
            if part.detail:
                image["detail"] = part.detail
            out.append({"type": "image_url", "image_url": image})
    return out


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens_details") or {}
    completion = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(prompt.get("cached_tokens") or 0) if isinstance(prompt, dict) else 0,
        reasoning_tokens=int(completion.get("reasoning_tokens") or 0)
        if isinstance(completion, dict)
        else 0,
    )


def _new_call_id() -> str:
    return f"call_{ULID()}"


def _stream_error(provider: str, body: Any) -> ProviderError | None:
    error = body.get("error") if isinstance(body, dict) else None
    if error is None:
        return None
    message = error.get("message") if isinstance(error, dict) else str(error)
    return ProviderError(f"provider {provider!r} failed the call: {message}", status=502)


def _completion_events(answer: Any, provider: str) -> list[ModelEvent]:
    """The events of a whole (not streamed) completion."""
    failure = _stream_error(provider, answer)
    if failure is not None:
        raise failure
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProviderError(f"provider {provider!r} answered without a choice", status=502)
    choice = choices[0]
    message = choice.get("message") or {}
    events: list[ModelEvent] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        events.append(ReasoningDelta(reasoning))
    if isinstance(message.get("content"), str) and message["content"]:
        events.append(TextDelta(message["content"]))
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        events.append(
            ToolCallStart(index, call.get("id") or _new_call_id(), function.get("name") or "")
        )
        events.append(ToolCallDelta(index, function.get("arguments") or ""))
    reason = _FINISH.get(choice.get("finish_reason") or "stop", "stop")
    events.append(Finish(reason, _usage(answer.get("usage"))))  # type: ignore[arg-type]
    return events


class _ChunkReader:
    """Reads a stream's chunks; the finish waits for the end (usage may come after it)."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._ids: dict[int, str] = {}
        self._reason: str | None = None
        self._done = False
        self._usage: Usage | None = None

    @property
    def done(self) -> bool:
        return self._done

    def read(self, event: ServerEvent) -> list[ModelEvent]:
        data = event.data
        if data.strip() == "[DONE]":
            self._done = True
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProviderError(
                f"provider {self._provider!r} sent a chunk that is not JSON", status=502
            ) from None
        failure = _stream_error(self._provider, chunk)
        if failure is not None:
            raise failure
        if not isinstance(chunk, dict):
            return []
        usage = _usage(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        events: list[ModelEvent] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events.append(ReasoningDelta(reasoning))
            content = delta.get("content")
            if isinstance(content, str) and content:
                events.append(TextDelta(content))
            for call in delta.get("tool_calls") or []:
                events.extend(self._call(call))
            if choice.get("finish_reason"):
                self._reason = choice["finish_reason"]
        return events

    def _call(self, call: dict[str, Any]) -> list[ModelEvent]:
        raw_index = call.get("index")
        index = raw_index if isinstance(raw_index, int) else 0
        function = call.get("function") or {}
        call_id = call.get("id")
        events: list[ModelEvent] = []
        if index not in self._ids or (call_id and call_id != self._ids[index]):
            self._ids[index] = call_id or _new_call_id()
            events.append(ToolCallStart(index, self._ids[index], function.get("name") or ""))
        elif function.get("name"):
            events.append(ToolCallStart(index, self._ids[index], function["name"]))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(ToolCallDelta(index, arguments))
        return events

    def finish(self) -> Finish:
        if self._reason is None:
            raise ProviderError(
                f"provider {self._provider!r} closed the stream before the turn ended",
                status=502,
                code="provider_stream_broken",
            )
        return Finish(_FINISH.get(self._reason, "stop"), self._usage)  # type: ignore[arg-type]
