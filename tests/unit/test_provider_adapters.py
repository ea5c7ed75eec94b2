"""The Anthropic Messages and OpenAI Responses adapters against in-process vendors
(`httpx.MockTransport`): the request each sends, and the events each reads from a whole
answer and from a stream written as the vendor writes it (in small pieces)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from sidecar.llm.items import (
    FunctionCallItem,
    FunctionOutputItem,
    ImagePart,
    Item,
    MessageItem,
    ReasoningItem,
    TextPart,
)
from sidecar.llm.providers.anthropic import AnthropicMessages
from sidecar.llm.providers.base import (
    Finish,
    ModelEvent,
    ModelRequest,
    NamedTool,
    Provider,
    ProviderError,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    TurnBuilder,
    Usage,
)
from sidecar.llm.providers.http import Endpoint, HttpxTransport
from sidecar.llm.providers.openai_responses import OpenAIResponses
from tools.base import FunctionDefinition, JsonObject

pytestmark = pytest.mark.anyio

PNG = "data:image/png;base64,iVBORw0KGgo="
PHOTO = "https://example.com/cat.jpg"
CITY: JsonObject = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
WEATHER = FunctionDefinition("get_weather", "The weather of a city", CITY)
REPORT: dict[str, object] = {
    "type": "object",
    "properties": {"temp": {"type": "number"}},
    "required": ["temp"],
}

Answer = Callable[[], httpx.Response]


class Vendor:
    """An in-process vendor: gives every call a fresh `answer`, keeps what it was sent."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._answer()

    @property
    def body(self) -> Any:
        return json.loads(self.requests[-1].content)


def anthropic(client: httpx.AsyncClient) -> Provider:
    endpoint = Endpoint("anthropic", "https://api.anthropic.com", {"x-api-key": "sk-ant-test"})
    return AnthropicMessages(HttpxTransport(client), endpoint)


def responses(client: httpx.AsyncClient) -> Provider:
    endpoint = Endpoint("openai", "https://api.openai.com/v1", {"Authorization": "Bearer sk-t"})
    return OpenAIResponses(HttpxTransport(client), endpoint)


async def run(
    make: Callable[[httpx.AsyncClient], Provider],
    answer: Answer,
    request: ModelRequest,
    *,
    streaming: bool = True,
) -> tuple[list[ModelEvent], Vendor]:
    vendor = Vendor(answer)
    async with httpx.AsyncClient(transport=httpx.MockTransport(vendor.handle)) as client:
        events = [event async for event in make(client).stream(request, streaming=streaming)]
    return events, vendor


async def fails(
    make: Callable[[httpx.AsyncClient], Provider], answer: Answer, request: ModelRequest
) -> tuple[ProviderError, list[ModelEvent]]:
    """The error a call ends with, and the events that came before it."""
    seen: list[ModelEvent] = []

    async def consume(provider: Provider) -> None:
        async for event in provider.stream(request):
            seen.append(event)

    vendor = Vendor(answer)
    async with httpx.AsyncClient(transport=httpx.MockTransport(vendor.handle)) as client:
        with pytest.raises(ProviderError) as caught:
            await consume(make(client))
    return caught.value, seen


def whole(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return lambda: httpx.Response(status, json=body, headers=headers)


def sse(*events: dict[str, Any]) -> bytes:
    """Events as both vendors write them: `event:` the type, `data:` the JSON, a blank line."""
    return b"".join(
        b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
        for event in events
    )


def streamed(content: bytes) -> Answer:
    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(content), 7):
            yield content[start : start + 7]

    return lambda: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=pieces()
    )


def fold(events: list[ModelEvent], provider: str) -> tuple[tuple[Item, ...], Usage, str]:
    builder = TurnBuilder(provider)
    for event in events:
        builder.add(event)
    turn = builder.turn()
    return turn.items, turn.usage, turn.finish


def ask(items: tuple[Item, ...] = (), **options: Any) -> ModelRequest:
    question = (MessageItem("user", (TextPart("Weather in Paris?"),)),)
    return ModelRequest(model="m", items=items or question, **options)


# --- Anthropic Messages --------------------------------------------------------------------

CLAUDE_TEXT = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Sunny, 21 degrees."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 20,
        "output_tokens": 7,
    },
}


def claude_start(input_tokens: int = 10, cache_read: int = 0) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": cache_read,
                "output_tokens": 1,
            },
        },
    }


def claude_block(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def claude_delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def claude_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def claude_end(stop_reason: str, output_tokens: int) -> tuple[dict[str, Any], ...]:
    return (
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    )


def claude_call(index: int, call_id: str, *pieces: str) -> tuple[dict[str, Any], ...]:
    block = {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {}}
    deltas = [claude_delta(index, {"type": "input_json_delta", "partial_json": p}) for p in pieces]
    return (claude_block(index, block), *deltas, claude_stop(index))


async def test_anthropic_sends_the_conversation_as_messages_and_a_system() -> None:
    request = ModelRequest(
        model="claude-sonnet-4-5",
        instructions="Be brief.",
        items=(
            MessageItem("developer", (TextPart("Answer in English."),)),
            MessageItem("user", (TextPart("Weather here?"), ImagePart(PNG), ImagePart(PHOTO))),
            ReasoningItem("The user wants weather.", opaque="sig-1", provider="anthropic"),
            MessageItem("assistant", (TextPart("Looking it up."),)),
            FunctionCallItem("call_1", "get_weather", '{"city": "Paris"}'),
            FunctionCallItem("call.2", "get_weather", "{}"),
            FunctionOutputItem("call_1", '{"temp": 21}'),
            FunctionOutputItem("call.2", '{"error": "no city"}'),
            ReasoningItem("another provider's", opaque="enc", provider="openai"),
            MessageItem("user", (TextPart("And in Rome?"),)),
        ),
        tools=(WEATHER,),
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=1.4,
        top_p=0.9,
        stop=("END",),
    )
    events, vendor = await run(anthropic, whole(CLAUDE_TEXT), request, streaming=False)
    sent = vendor.requests[0]
    assert str(sent.url) == "https://api.anthropic.com/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert vendor.body == {
        "model": "claude-sonnet-4-5",
        "system": "Be brief.\n\nAnswer in English.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": "iVBORw0KGgo=",
                        },
                    },
                    {"type": "image", "source": {"type": "url", "url": PHOTO}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "thinking",
                        "thinking": "The user wants weather.",
                        "signature": "sig-1",
                    },
                    {"type": "text", "text": "Looking it up."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": '{"temp": 21}'},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_2",
                        "content": '{"error": "no city"}',
                    },
                    {"type": "text", "text": "And in Rome?"},
                ],
            },
        ],
        "tools": [
            {"name": "get_weather", "description": "The weather of a city", "input_schema": CITY}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "max_tokens": 4096,
        "temperature": 1.0,
        "top_p": 0.9,
        "stop_sequences": ["END"],
    }
    assert events == [TextDelta("Sunny, 21 degrees."), Finish("stop", Usage(35, 7, 20))]


@pytest.mark.parametrize(
    ("options", "thinking", "max_tokens"),
    [
        ({"reasoning_effort": "medium"}, 8192, 4096 + 8192),
        ({"reasoning_effort": "high", "max_output_tokens": 3000}, 1500, 3000),
        ({"reasoning_effort": "high", "max_output_tokens": 2000}, None, 2000),
        ({"reasoning_effort": "none"}, None, 4096),
        ({"reasoning_effort": "low", "tools": (WEATHER,), "tool_choice": "required"}, None, 4096),
    ],
)
async def test_anthropic_reasoning_effort_is_a_thinking_budget(
    options: dict[str, Any], thinking: int | None, max_tokens: int
) -> None:
    request = ask(temperature=0.2, top_p=0.5, **options)
    _, vendor = await run(anthropic, whole(CLAUDE_TEXT), request, streaming=False)
    body = vendor.body
    assert body["max_tokens"] == max_tokens
    if thinking is None:
        assert "thinking" not in body
        assert (body["temperature"], body["top_p"]) == (0.2, 0.5)
    else:
        assert body["thinking"] == {"type": "enabled", "budget_tokens": thinking}
        assert "temperature" not in body
        assert "top_p" not in body  # under 0.95: not with thinking


async def test_anthropic_does_not_think_after_tool_calls_made_without_thinking() -> None:
    items = (
        MessageItem("user", (TextPart("Weather in Paris?"),)),
        FunctionCallItem("call_1", "get_weather", '{"city": "Paris"}'),
        FunctionOutputItem("call_1", '{"temp": 21}'),
    )
    answer = streamed(sse(claude_start(), *claude_end("end_turn", 1)))
    _, vendor = await run(anthropic, answer, ask(items, reasoning_effort="high"))
    assert "thinking" not in vendor.body
    assert vendor.body["stream"] is True


async def test_anthropic_refuses_an_effort_it_does_not_know() -> None:
    error, _ = await fails(anthropic, whole(CLAUDE_TEXT), ask(reasoning_effort="extreme"))
    assert error.code == "unsupported_request"
    assert "extreme" in error.message


async def test_anthropic_answers_a_json_schema_through_a_forced_tool() -> None:
    request = ask(json_schema=("weather_report", REPORT, True))
    answer = {
        **CLAUDE_TEXT,
        "content": [
            {"type": "tool_use", "id": "toolu_9", "name": "weather_report", "input": {"temp": 21}}
        ],
        "stop_reason": "tool_use",
    }
    events, vendor = await run(anthropic, whole(answer), request, streaming=False)
    assert vendor.body["tools"] == [
        {
            "name": "weather_report",
            "description": vendor.body["tools"][0]["description"],
            "input_schema": REPORT,
        }
    ]
    assert vendor.body["tool_choice"] == {"type": "tool", "name": "weather_report"}
    assert events == [TextDelta('{"temp":21}'), Finish("stop", Usage(35, 7, 20))]

    stream = sse(
        claude_start(),
        claude_block(
            0, {"type": "tool_use", "id": "toolu_9", "name": "weather_report", "input": {}}
        ),
        claude_delta(0, {"type": "input_json_delta", "partial_json": '{"temp"'}),
        claude_delta(0, {"type": "input_json_delta", "partial_json": ": 21}"}),
        claude_stop(0),
        *claude_end("tool_use", 9),
    )
    events, _ = await run(anthropic, streamed(stream), request)
    assert fold(events, "anthropic") == (
        (MessageItem("assistant", (TextPart('{"temp": 21}'),)),),
        Usage(10, 9, 0),
        "stop",
    )


async def test_anthropic_keeps_the_real_tools_next_to_the_answer_tool() -> None:
    request = ask(tools=(WEATHER,), json_schema=("weather_report", REPORT, True))
    _, vendor = await run(anthropic, whole(CLAUDE_TEXT), request, streaming=False)
    assert [tool["name"] for tool in vendor.body["tools"]] == ["get_weather", "weather_report"]
    assert vendor.body["tool_choice"] == {"type": "any"}
    clash = ask(tools=(WEATHER,), json_schema=("get_weather", REPORT, True))
    error, _ = await fails(anthropic, whole(CLAUDE_TEXT), clash)
    assert error.code == "unsupported_request"


async def test_anthropic_streams_a_text_answer() -> None:
    stream = sse(
        claude_start(input_tokens=12, cache_read=30),
        claude_block(0, {"type": "text", "text": ""}),
        {"type": "ping"},
        claude_delta(0, {"type": "text_delta", "text": "Sunny, "}),
        claude_delta(0, {"type": "text_delta", "text": "21 degrees."}),
        claude_stop(0),
        *claude_end("end_turn", 8),
    )
    events, _ = await run(anthropic, streamed(stream), ask())
    assert events == [
        TextDelta("Sunny, "),
        TextDelta("21 degrees."),
        Finish("stop", Usage(input_tokens=42, output_tokens=8, cached_tokens=30)),
    ]


async def test_anthropic_streams_thinking_and_a_tool_call_in_pieces() -> None:
    stream = sse(
        claude_start(),
        claude_block(0, {"type": "thinking", "thinking": "", "signature": ""}),
        claude_delta(0, {"type": "thinking_delta", "thinking": "Paris: "}),
        claude_delta(0, {"type": "thinking_delta", "thinking": "look it up."}),
        claude_delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}),
        claude_stop(0),
        claude_block(1, {"type": "text", "text": ""}),
        claude_delta(1, {"type": "text_delta", "text": "Let me check."}),
        claude_stop(1),
        *claude_call(2, "toolu_01", "", '{"ci', 'ty": "Pa', 'ris"}'),
        *claude_end("tool_use", 40),
    )
    events, _ = await run(anthropic, streamed(stream), ask(reasoning_effort="low"))
    assert events == [
        ReasoningDelta("Paris: "),
        ReasoningDelta("look it up."),
        ReasoningDelta(opaque="EqQBCgIYAhIM"),
        TextDelta("Let me check."),
        ToolCallStart(2, "toolu_01", "get_weather"),
        ToolCallDelta(2, '{"ci'),
        ToolCallDelta(2, 'ty": "Pa'),
        ToolCallDelta(2, 'ris"}'),
        Finish("tool_calls", Usage(10, 40, 0)),
    ]
    items, _, finish = fold(events, "anthropic")
    assert finish == "tool_calls"
    assert items == (
        ReasoningItem("Paris: look it up.", opaque="EqQBCgIYAhIM", provider="anthropic"),
        MessageItem("assistant", (TextPart("Let me check."),)),
        FunctionCallItem("toolu_01", "get_weather", '{"city": "Paris"}'),
    )
    # The turn goes back as one assistant message, thinking first: so Claude thinks on.
    follow_up = ask(
        (*ask().items, *items, FunctionOutputItem("toolu_01", "21")), reasoning_effort="low"
    )
    _, vendor = await run(anthropic, whole(CLAUDE_TEXT), follow_up, streaming=False)
    assert [block["type"] for block in vendor.body["messages"][1]["content"]] == [
        "thinking",
        "text",
        "tool_use",
    ]
    assert vendor.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}


async def test_anthropic_reads_parallel_tool_calls() -> None:
    stream = sse(
        claude_start(),
        *claude_call(0, "toolu_01", '{"city": ', '"Paris"}'),
        *claude_call(1, "toolu_02", '{"city": "Ro', 'me"}'),
        *claude_end("tool_use", 30),
    )
    events, _ = await run(anthropic, streamed(stream), ask(tools=(WEATHER,)))
    assert fold(events, "anthropic")[0] == (
        FunctionCallItem("toolu_01", "get_weather", '{"city": "Paris"}'),
        FunctionCallItem("toolu_02", "get_weather", '{"city": "Rome"}'),
    )
    answer = {
        **CLAUDE_TEXT,
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
            {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {}},
        ],
        "stop_reason": "tool_use",
    }
    events, _ = await run(anthropic, whole(answer), ask(tools=(WEATHER,)), streaming=False)
    assert events[:4] == [
        ToolCallStart(0, "toolu_01", "get_weather"),
        ToolCallDelta(0, '{"city":"Paris"}'),
        ToolCallStart(1, "toolu_02", "get_weather"),
        ToolCallDelta(1, "{}"),
    ]
    assert events[4] == Finish("tool_calls", Usage(35, 7, 20))


async def test_anthropic_rate_limit_is_retryable_after_its_delay() -> None:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}
    error, _ = await fails(anthropic, whole(body, 429, {"retry-after": "7"}), ask())
    assert (error.status, error.code, error.retryable, error.retry_after) == (
        429,
        "rate_limited",
        True,
        7.0,
    )
    assert "Slow down" in error.message


async def test_anthropic_error_event_in_a_stream_is_a_provider_error() -> None:
    stream = sse(
        claude_start(),
        claude_block(0, {"type": "text", "text": ""}),
        claude_delta(0, {"type": "text_delta", "text": "Sun"}),
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    error, seen = await fails(anthropic, streamed(stream), ask())
    assert seen == [TextDelta("Sun")]
    assert (error.status, error.retryable) == (529, True)
    assert "Overloaded" in error.message


async def test_anthropic_stream_without_message_stop_is_a_provider_error() -> None:
    stream = sse(
        claude_start(),
        claude_block(0, {"type": "text", "text": ""}),
        claude_delta(0, {"type": "text_delta", "text": "Sun"}),
        claude_end("end_turn", 3)[0],
    )
    error, seen = await fails(anthropic, streamed(stream), ask())
    assert seen == [TextDelta("Sun")]
    assert error.code == "provider_stream_broken"


# --- OpenAI Responses ----------------------------------------------------------------------

USAGE = {
    "input_tokens": 50,
    "input_tokens_details": {"cached_tokens": 20},
    "output_tokens": 30,
    "output_tokens_details": {"reasoning_tokens": 12},
    "total_tokens": 80,
}


def gpt_response(status: str, output: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "status": status,
        "model": "gpt-5",
        "output": output,
        "usage": USAGE if status != "in_progress" else None,
        "error": None,
        "incomplete_details": None,
        **more,
    }


def gpt_message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_1",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def gpt_event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


def gpt_call_item(call_id: str, item_id: str, arguments: str = "") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": "get_weather",
        "arguments": arguments,
        "status": "completed" if arguments else "in_progress",
    }


def gpt_start() -> tuple[dict[str, Any], ...]:
    return (
        gpt_event("response.created", sequence_number=0, response=gpt_response("in_progress", [])),
        gpt_event(
            "response.in_progress", sequence_number=1, response=gpt_response("in_progress", [])
        ),
    )


def gpt_completed(*output: dict[str, Any]) -> dict[str, Any]:
    return gpt_event("response.completed", response=gpt_response("completed", list(output)))


async def test_responses_sends_the_conversation_as_input_items() -> None:
    request = ModelRequest(
        model="gpt-5",
        instructions="Be brief.",
        items=(
            MessageItem("developer", (TextPart("Answer in English."),)),
            MessageItem(
                "user", (TextPart("Weather here?"), ImagePart(PNG), ImagePart(PHOTO, "high"))
            ),
            ReasoningItem("Wants weather.", id="rs_1", opaque="gAAAAB", provider="openai"),
            ReasoningItem("another provider's", opaque="sig", provider="anthropic"),
            MessageItem("assistant", (TextPart("Looking it up."),)),
            FunctionCallItem("call_1", "get_weather", '{"city": "Paris"}', id="fc_1"),
            FunctionOutputItem("call_1", '{"temp": 21}'),
            MessageItem("user", (TextPart("And in Rome?"),)),
        ),
        tools=(WEATHER,),
        tool_choice=NamedTool("get_weather"),
        parallel_tool_calls=False,
        json_schema=("weather_report", REPORT, True),
        max_output_tokens=500,
        temperature=0.3,
        top_p=0.9,
        reasoning_effort="low",
    )
    answer = gpt_response("completed", [gpt_message("Sunny.")])
    events, vendor = await run(responses, whole(answer), request, streaming=False)
    sent = vendor.requests[0]
    assert str(sent.url) == "https://api.openai.com/v1/responses"
    assert sent.headers["authorization"] == "Bearer sk-t"
    assert vendor.body == {
        "model": "gpt-5",
        "instructions": "Be brief.",
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "Answer in English."}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Weather here?"},
                    {"type": "input_image", "image_url": PNG, "detail": "auto"},
                    {"type": "input_image", "image_url": PHOTO, "detail": "high"},
                ],
            },
            {
                "type": "reasoning",
                "encrypted_content": "gAAAAB",
                "summary": [{"type": "summary_text", "text": "Wants weather."}],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Looking it up."}],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "And in Rome?"}],
            },
        ],
        "store": False,
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "The weather of a city",
                "parameters": CITY,
                "strict": False,
            }
        ],
        "parallel_tool_calls": False,
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {
            "format": {
                "type": "json_schema",
                "name": "weather_report",
                "schema": REPORT,
                "strict": True,
            }
        },
        "max_output_tokens": 500,
        "temperature": 0.3,
        "top_p": 0.9,
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
    }
    assert events == [TextDelta("Sunny."), Finish("stop", Usage(50, 30, 20, 12))]


async def test_responses_asks_for_encrypted_reasoning_only_when_reasoning() -> None:
    _, vendor = await run(responses, streamed(sse(gpt_completed())), ask(tool_choice="required"))
    assert "include" not in vendor.body
    assert "reasoning" not in vendor.body
    assert vendor.body["tool_choice"] == "required"
    assert vendor.body["stream"] is True
    assert vendor.body["store"] is False


async def test_responses_refuses_stop_sequences() -> None:
    error, _ = await fails(responses, whole(gpt_response("completed", [])), ask(stop=("END",)))
    assert error.code == "unsupported_request"


async def test_responses_reads_a_whole_response() -> None:
    reasoning = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [
            {"type": "summary_text", "text": "**Weather**"},
            {"type": "summary_text", "text": "Look it up."},
        ],
        "encrypted_content": "gAAAAB",
    }
    output = [
        reasoning,
        gpt_message("Checking."),
        gpt_call_item("call_1", "fc_1", '{"city":"Paris"}'),
    ]
    events, _ = await run(
        responses, whole(gpt_response("completed", output)), ask(), streaming=False
    )
    assert events == [
        ReasoningDelta("**Weather**\n\nLook it up.", opaque="gAAAAB"),
        TextDelta("Checking."),
        ToolCallStart(2, "call_1", "get_weather"),
        ToolCallDelta(2, '{"city":"Paris"}'),
        Finish("tool_calls", Usage(50, 30, 20, 12)),
    ]
    truncated = gpt_response(
        "incomplete", [gpt_message("Sun")], incomplete_details={"reason": "max_output_tokens"}
    )
    events, _ = await run(responses, whole(truncated), ask(), streaming=False)
    assert events == [TextDelta("Sun"), Finish("length", Usage(50, 30, 20, 12))]


async def test_responses_streams_a_text_answer() -> None:
    message = {**gpt_message(""), "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    text = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    stream = sse(
        *gpt_start(),
        gpt_event("response.output_item.added", sequence_number=2, output_index=0, item=message),
        gpt_event("response.content_part.added", sequence_number=3, **text, part=part),
        gpt_event("response.output_text.delta", sequence_number=4, **text, delta="Sunny, "),
        gpt_event("response.output_text.delta", sequence_number=5, **text, delta="21 degrees."),
        gpt_event(
            "response.output_text.done", sequence_number=6, **text, text="Sunny, 21 degrees."
        ),
        gpt_event(
            "response.output_item.done",
            sequence_number=7,
            output_index=0,
            item=gpt_message("Sunny, 21 degrees."),
        ),
        gpt_completed(gpt_message("Sunny, 21 degrees.")),
    )
    events, _ = await run(responses, streamed(stream), ask())
    assert events == [
        TextDelta("Sunny, "),
        TextDelta("21 degrees."),
        Finish(
            "stop", Usage(input_tokens=50, output_tokens=30, cached_tokens=20, reasoning_tokens=12)
        ),
    ]


async def test_responses_streams_reasoning_and_a_tool_call_in_pieces() -> None:
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": []}
    summary = {"item_id": "rs_1", "output_index": 0}
    args = {"item_id": "fc_1", "output_index": 1}
    done_reasoning = {
        **reasoning,
        "summary": [{"type": "summary_text", "text": "Paris: look it up."}],
        "encrypted_content": "gAAAAB",
    }
    stream = sse(
        *gpt_start(),
        gpt_event("response.output_item.added", output_index=0, item=reasoning),
        gpt_event("response.reasoning_summary_part.added", **summary, summary_index=0),
        gpt_event(
            "response.reasoning_summary_text.delta", **summary, summary_index=0, delta="Paris: "
        ),
        gpt_event(
            "response.reasoning_summary_text.delta", **summary, summary_index=0, delta="look it up."
        ),
        gpt_event("response.output_item.done", output_index=0, item=done_reasoning),
        gpt_event(
            "response.output_item.added", output_index=1, item=gpt_call_item("call_1", "fc_1")
        ),
        gpt_event("response.function_call_arguments.delta", **args, delta=""),
        gpt_event("response.function_call_arguments.delta", **args, delta='{"ci'),
        gpt_event("response.function_call_arguments.delta", **args, delta='ty":"Paris"}'),
        gpt_event("response.function_call_arguments.done", **args, arguments='{"city":"Paris"}'),
        gpt_event(
            "response.output_item.done",
            output_index=1,
            item=gpt_call_item("call_1", "fc_1", '{"city":"Paris"}'),
        ),
        gpt_completed(done_reasoning, gpt_call_item("call_1", "fc_1", '{"city":"Paris"}')),
    )
    events, _ = await run(responses, streamed(stream), ask(reasoning_effort="low"))
    assert events == [
        ReasoningDelta("Paris: "),
        ReasoningDelta("look it up."),
        ReasoningDelta(opaque="gAAAAB"),
        ToolCallStart(1, "call_1", "get_weather"),
        ToolCallDelta(1, '{"ci'),
        ToolCallDelta(1, 'ty":"Paris"}'),
        Finish("tool_calls", Usage(50, 30, 20, 12)),
    ]
    assert fold(events, "openai") == (
        (
            ReasoningItem("Paris: look it up.", opaque="gAAAAB", provider="openai"),
            FunctionCallItem("call_1", "get_weather", '{"city":"Paris"}'),
        ),
        Usage(50, 30, 20, 12),
        "tool_calls",
    )


async def test_responses_reads_parallel_tool_calls_by_index_and_item() -> None:
    stream = sse(
        *gpt_start(),
        gpt_event(
            "response.output_item.added", output_index=0, item=gpt_call_item("call_1", "fc_1")
        ),
        gpt_event(
            "response.output_item.added", output_index=1, item=gpt_call_item("call_2", "fc_2")
        ),
        gpt_event("response.function_call_arguments.delta", item_id="fc_2", delta='{"city":'),
        gpt_event("response.function_call_arguments.delta", item_id="fc_2", delta='"Rome"}'),
        # This server sends the first call's arguments only when they are done.
        gpt_event(
            "response.function_call_arguments.done",
            item_id="fc_1",
            output_index=0,
            arguments='{"city":"Paris"}',
        ),
        gpt_event(
            "response.function_call_arguments.done",
            item_id="fc_2",
            output_index=1,
            arguments='{"city":"Rome"}',
        ),
        gpt_completed(),
    )
    events, _ = await run(responses, streamed(stream), ask(tools=(WEATHER,)))
    items, _, finish = fold(events, "openai")
    assert items == (
        FunctionCallItem("call_1", "get_weather", '{"city":"Paris"}'),
        FunctionCallItem("call_2", "get_weather", '{"city":"Rome"}'),
    )
    assert finish == "tool_calls"


async def test_responses_incomplete_stream_finishes_by_its_reason() -> None:
    text = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    incomplete = gpt_response("incomplete", [], incomplete_details={"reason": "content_filter"})
    stream = sse(
        *gpt_start(),
        gpt_event("response.output_text.delta", **text, delta="Sun"),
        gpt_event("response.incomplete", response=incomplete),
    )
    events, _ = await run(responses, streamed(stream), ask())
    assert events == [TextDelta("Sun"), Finish("content_filter", Usage(50, 30, 20, 12))]


async def test_responses_rate_limit_is_retryable_after_its_delay() -> None:
    body = {
        "error": {
            "message": "Rate limit reached",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
    }
    error, _ = await fails(responses, whole(body, 429, {"retry-after": "7"}), ask())
    assert (error.status, error.code, error.retryable, error.retry_after) == (
        429,
        "rate_limited",
        True,
        7.0,
    )
    assert "Rate limit reached" in error.message


async def test_responses_error_events_in_a_stream_are_provider_errors() -> None:
    text = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    stream = sse(
        *gpt_start(),
        gpt_event("response.output_text.delta", **text, delta="Sun"),
        gpt_event("error", code="server_error", message="The server had an error", param=None),
    )
    error, seen = await fails(responses, streamed(stream), ask())
    assert seen == [TextDelta("Sun")]
    assert (error.status, error.retryable) == (500, True)
    assert "The server had an error" in error.message

    failed = gpt_response(
        "failed", [], error={"code": "invalid_image_url", "message": "Cannot fetch the image"}
    )
    error, _ = await fails(
        responses, streamed(sse(*gpt_start(), gpt_event("response.failed", response=failed))), ask()
    )
    assert (error.status, error.retryable) == (400, False)
    assert "Cannot fetch the image" in error.message


async def test_responses_stream_without_a_terminal_event_is_a_provider_error() -> None:
    text = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    stream = sse(*gpt_start(), gpt_event("response.output_text.delta", **text, delta="Sun"))
    error, seen = await fails(responses, streamed(stream), ask())
    assert seen == [TextDelta("Sun")]
    assert error.code == "provider_stream_broken"
