"""The scripted fake providers, checked with plain httpx: the exact wire shapes of each
service, as JSON and as event streams, and the scripted failures (no sidecar code)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import pytest

from tests.support.fake_providers import (
    Call,
    Cut,
    FakeProvider,
    Slow,
    Status,
    StreamError,
    Text,
    ToolCalls,
    Turn,
    Usage,
    serve_fake_providers,
)

CHAT, RESPONSES, MESSAGES = "/chat/completions", "/responses", "/messages"
WEATHER = '{"city":"Paris"}'


@pytest.fixture(scope="module")
def running() -> Iterator[FakeProvider]:
    with serve_fake_providers() as fake:
        yield fake


@pytest.fixture
def fake(running: FakeProvider) -> FakeProvider:
    running.reset()
    return running


@pytest.fixture
def client(fake: FakeProvider) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, timeout=5) as client:
        yield client


def sse(text: str) -> list[tuple[str | None, Any]]:
    """The events of a whole stream: (event name, parsed data or `[DONE]`)."""
    assert text.endswith("\n\n"), f"the stream does not end with a whole event: {text[-80:]!r}"
    events: list[tuple[str | None, Any]] = []
    for block in text.removesuffix("\n\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            if key == "event":
                name = value
            else:
                assert key == "data", line
                data.append(value)
        payload = "\n".join(data)
        events.append((name, payload if payload == "[DONE]" else json.loads(payload)))
    return events


def stream(client: httpx.Client, path: str, **body: Any) -> list[tuple[str | None, Any]]:
    response = client.post(path, json={"model": "m-1", "stream": True, **body})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    return sse(response.text)


def chunks(events: list[tuple[str | None, Any]]) -> list[dict[str, Any]]:
    """The chunks of a Chat Completions stream, which must end with `[DONE]`."""
    assert events[-1] == (None, "[DONE]")
    assert all(name is None for name, _ in events)
    return [data for _, data in events[:-1]]


def typed(events: list[tuple[str | None, Any]]) -> list[dict[str, Any]]:
    """The data of a typed stream, each named by its `event:` line."""
    for name, data in events:
        assert name == data["type"]
    return [data for _, data in events]


CHAT_USAGE = {
    "prompt_tokens": 7,
    "completion_tokens": 5,
    "total_tokens": 12,
    "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 2,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
USAGE = Usage(input_tokens=7, output_tokens=5, cached_tokens=3, reasoning_tokens=2)


# --- OpenAI Chat Completions --------------------------------------------------------------


def test_chat_text_as_json(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(Turn(Text("Hello!"), usage=USAGE))
    messages = [{"role": "user", "content": "hi"}]
    response = client.post(
        CHAT,
        json={"model": "gpt-4o", "messages": messages},
        headers={"authorization": "Bearer sk-1"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {
        "id": body["id"],
        "object": "chat.completion",
        "created": body["created"],
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello!",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": CHAT_USAGE,
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    seen = fake.last()
    assert (seen.method, seen.path, seen.wire) == ("POST", "/v1/chat/completions", "chat")
    assert seen.header("Authorization") == "Bearer sk-1"
    assert seen.json["messages"] == messages
    assert fake.pending == 0


def test_chat_text_streamed_in_deltas_with_usage_after_the_finish(
    fake: FakeProvider, client: httpx.Client
) -> None:
    fake.reply(Turn(Text("Hello world!", deltas=3), usage=USAGE))
    parts = chunks(stream(client, CHAT, stream_options={"include_usage": True}))
    first = parts[0]
    assert set(first) == {
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
    }
    for part in parts:
        assert (part["id"], part["object"]) == (first["id"], "chat.completion.chunk")
        assert (part["created"], part["model"]) == (first["created"], "m-1")
    assert [part["choices"] for part in parts[:5]] == [
        [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": "", "refusal": None},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        *(
            [{"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}]
            for piece in ("Hell", "o wo", "rld!")
        ),
        [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
    ]
    assert all(part["usage"] is None for part in parts[:5])
    assert parts[5]["choices"] == []
    assert parts[5]["usage"] == CHAT_USAGE
    assert len(parts) == 6


def test_chat_tool_calls_streamed_in_pieces(fake: FakeProvider, client: httpx.Client) -> None:
    pieces = ("", '{"city":', "", '"Paris"}')
    fake.reply(ToolCalls([Call("get_weather", WEATHER, pieces=pieces), Call("now", id="call_b")]))
    parts = chunks(stream(client, CHAT))
    assert all("usage" not in part for part in parts)  # not asked for
    deltas = [part["choices"][0]["delta"] for part in parts]
    call_id = deltas[0]["tool_calls"][0]["id"]
    assert call_id.startswith("call_")
    assert deltas == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
            "refusal": None,
        },
        *({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in pieces),
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "now", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert [part["choices"][0]["finish_reason"] for part in parts][-2:] == [None, "tool_calls"]


def test_chat_parallel_calls_all_at_index_0_after_text(
    fake: FakeProvider, client: httpx.Client
) -> None:
    calls = [Call("a", '{"x":1}', pieces=0), Call("b", '{"y":2}', pieces=0)]
    fake.reply(ToolCalls(calls, text="On it.", same_index=True, usage_with_finish=True))
    parts = chunks(stream(client, CHAT))
    deltas = [part["choices"][0]["delta"] for part in parts]
    assert deltas[:2] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "On it."},
    ]
    heads = [delta["tool_calls"][0] for delta in deltas[2:4]]
    assert [head["index"] for head in heads] == [0, 0]
    assert [head["function"] for head in heads] == [
        {"name": "a", "arguments": '{"x":1}'},
        {"name": "b", "arguments": '{"y":2}'},
    ]
    assert heads[0]["id"] != heads[1]["id"]
    assert parts[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert parts[-1]["usage"]["total_tokens"] == 30  # in the finish chunk itself
    assert len(parts) == 5


def test_chat_reasoning_then_a_tool_call_as_json(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(ToolCalls([Call("get_weather", WEATHER, id="call_1")], reasoning="Need weather."))
    message = client.post(CHAT, json={"model": "m"}).json()["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    assert message["message"] == {
        "role": "assistant",
        "content": None,
        "reasoning_content": "Need weather.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": WEATHER},
            }
        ],
        "refusal": None,
        "annotations": [],
    }


# --- OpenAI Responses ---------------------------------------------------------------------

RESPONSES_USAGE = {
    "input_tokens": 7,
    "input_tokens_details": {"cached_tokens": 3},
    "output_tokens": 5,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 12,
}


def test_responses_text_as_json(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(Turn(Text("Hello!"), usage=USAGE))
    body = {"model": "gpt-5", "input": "hi", "instructions": "Be brief."}
    answer = client.post(RESPONSES, json=body).json()
    assert answer["id"].startswith("resp_")
    assert (answer["object"], answer["status"], answer["model"]) == (
        "response",
        "completed",
        "gpt-5",
    )
    assert (answer["error"], answer["incomplete_details"]) == (None, None)
    assert answer["instructions"] == "Be brief."
    message_id = answer["output"][0]["id"]
    assert answer["output"] == [
        {
            "id": message_id,
            "type": "message",
            "status": "completed",
            "content": [
                {"type": "output_text", "annotations": [], "logprobs": [], "text": "Hello!"}
            ],
            "role": "assistant",
        }
    ]
    assert answer["usage"] == RESPONSES_USAGE
    assert fake.last("/v1/responses").json["input"] == "hi"


def test_responses_text_streamed(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(Turn(Text("Hello!", deltas=2), usage=USAGE))
    events = typed(stream(client, RESPONSES))
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["output"] == []
    item_id = events[2]["item"]["id"]
    assert events[2] == {
        "type": "response.output_item.added",
        "sequence_number": 2,
        "output_index": 0,
        "item": {
            "id": item_id,
            "type": "message",
            "status": "in_progress",
            "content": [],
            "role": "assistant",
        },
    }
    at = {"item_id": item_id, "output_index": 0, "content_index": 0}
    assert events[4] == {
        "type": "response.output_text.delta",
        "sequence_number": 4,
        **at,
        "delta": "Hel",
        "logprobs": [],
    }
    assert events[5]["delta"] == "lo!"
    assert events[6] == {
        "type": "response.output_text.done",
        "sequence_number": 6,
        **at,
        "text": "Hello!",
        "logprobs": [],
    }
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": "Hello!"}
    assert events[7]["part"] == part
    assert events[8]["item"]["content"] == [part]
    completed = events[9]["response"]
    assert completed["status"] == "completed"
    assert completed["output"] == [events[8]["item"]]
    assert completed["usage"] == RESPONSES_USAGE


def test_responses_reasoning_and_calls_streamed(fake: FakeProvider, client: httpx.Client) -> None:
    calls = [
        Call("get_weather", WEATHER, id="call_w", pieces=("", '{"city":', '"Paris"}')),
        Call("now", pieces=0),  # its arguments only in the .done events
    ]
    fake.reply(ToolCalls(calls, reasoning="Need the weather."))
    events = typed(stream(client, RESPONSES))
    assert [event["type"] for event in events[2:]] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[4]["delta"] == "Need the weather."
    assert events[7]["item"]["summary"] == [{"type": "summary_text", "text": "Need the weather."}]
    added = events[8]["item"]
    assert added == {
        "id": added["id"],
        "type": "function_call",
        "status": "in_progress",
        "arguments": "",
        "call_id": "call_w",
        "name": "get_weather",
    }
    assert [events[n]["delta"] for n in (9, 10, 11)] == ["", '{"city":', '"Paris"}']
    assert events[12] == {
        "type": "response.function_call_arguments.done",
        "sequence_number": 12,
        "item_id": added["id"],
        "output_index": 1,
        "arguments": WEATHER,
    }
    assert events[13]["item"] == added | {"status": "completed", "arguments": WEATHER}
    assert events[15]["arguments"] == "{}"
    assert events[16]["item"]["name"] == "now"
    assert [item["type"] for item in events[17]["response"]["output"]] == [
        "reasoning",
        "function_call",
        "function_call",
    ]


# --- Anthropic Messages -------------------------------------------------------------------


def test_messages_text_as_json(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(Turn(Text("Hello!"), usage=USAGE))
    response = client.post(
        MESSAGES,
        json={
            "model": "claude-x",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"x-api-key": "sk-ant-1", "anthropic-version": "2023-06-01"},
    )
    body = response.json()
    assert response.headers["request-id"].startswith("req_")
    assert body == {
        "id": body["id"],
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 7,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 3,
            "output_tokens": 5,
        },
    }
    assert body["id"].startswith("msg_")
    seen = fake.last("/v1/messages")
    assert seen.header("x-api-key") == "sk-ant-1"
    assert seen.json["max_tokens"] == 64


def test_messages_text_streamed(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(Text("Hello!", deltas=2))
    events = typed(stream(client, MESSAGES))
    start = events[0]["message"]
    assert events[0] == {
        "type": "message_start",
        "message": {
            "id": start["id"],
            "type": "message",
            "role": "assistant",
            "model": "m-1",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 20,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    }
    assert events[1:] == [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo!"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 10},
        },
        {"type": "message_stop"},
    ]


def test_messages_thinking_and_tools_streamed(fake: FakeProvider, client: httpx.Client) -> None:
    calls = [Call("get_weather", WEATHER, id="toolu_w", pieces=2), Call("now", id="toolu_n")]
    fake.reply(ToolCalls(calls, reasoning="Need the weather.", text="Checking."))
    events = typed(stream(client, MESSAGES))
    blocks = [event for event in events if event["type"].startswith("content_block")]

    def delta(index: int, **fields: str) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": index, "delta": fields}

    assert blocks == [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        delta(0, type="thinking_delta", thinking="Need the weather."),
        delta(0, type="signature_delta", signature="fake-signature"),
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        delta(1, type="text_delta", text="Checking."),
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_w",
                "name": "get_weather",
                "input": {},
            },
        },
        delta(2, type="input_json_delta", partial_json='{"city":'),
        delta(2, type="input_json_delta", partial_json='"Paris"}'),
        {"type": "content_block_stop", "index": 2},
        {
            "type": "content_block_start",
            "index": 3,
            "content_block": {"type": "tool_use", "id": "toolu_n", "name": "now", "input": {}},
        },
        delta(3, type="input_json_delta", partial_json=""),  # a tool without input
        {"type": "content_block_stop", "index": 3},
    ]
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-1] == {"type": "message_stop"}


def test_messages_tool_without_input_as_json(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(Call("now", id="toolu_n"))
    body = client.post(MESSAGES, json={"model": "claude-x"}).json()
    assert body["content"] == [{"type": "tool_use", "id": "toolu_n", "name": "now", "input": {}}]
    assert body["stop_reason"] == "tool_use"


# --- the same script on every wire --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "finish"),
    [
        (CHAT, lambda body: body["choices"][0]["finish_reason"] == "length"),
        (RESPONSES, lambda body: body["incomplete_details"] == {"reason": "max_output_tokens"}),
        (MESSAGES, lambda body: body["stop_reason"] == "max_tokens"),
    ],
)
def test_a_truncated_turn(
    fake: FakeProvider, client: httpx.Client, path: str, finish: Callable[[Any], bool]
) -> None:
    fake.reply(Turn(Text("Hel"), truncated=True))
    assert finish(client.post(path, json={"model": "m"}).json())


def rate_limited(path: str, message: str) -> dict[str, Any]:
    """The body of a 429 on `path`, as the service sends it."""
    if path == MESSAGES:
        return {"type": "error", "error": {"type": "rate_limit_error", "message": message}}
    error = {"message": message, "type": "requests", "param": None, "code": "rate_limit_exceeded"}
    return {"error": error}


@pytest.mark.parametrize("path", [CHAT, RESPONSES, MESSAGES])
def test_429_with_retry_after(fake: FakeProvider, client: httpx.Client, path: str) -> None:
    fake.reply(Status(429, retry_after=1, message="Slow down."), Status(500))
    response = client.post(path, json={"model": "m", "stream": True})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/json"
    assert response.json() == rate_limited(path, "Slow down.")
    response = client.post(path, json={"model": "m"})
    assert response.status_code == 500
    assert "retry-after" not in response.headers


@pytest.mark.parametrize(
    ("path", "last"),
    [
        (CHAT, lambda events: events[-1][1]["choices"][0]["delta"] == {"content": "llo"}),
        (RESPONSES, lambda events: events[-1][1]["type"] == "response.output_item.done"),
        (MESSAGES, lambda events: events[-1][1]["type"] == "content_block_stop"),
    ],
)
def test_a_stream_that_closes_early(
    fake: FakeProvider, client: httpx.Client, path: str, last: Callable[[Any], bool]
) -> None:
    fake.reply(Cut(Text("Hello", deltas=2)))
    events = stream(client, path, stream_options={"include_usage": True})
    assert last(events)
    terminal = {"[DONE]", "response.completed", "message_delta", "message_stop"}
    for _, data in events:
        assert isinstance(data, dict)  # no `[DONE]`
        assert data.get("type") not in terminal
        assert all(choice["finish_reason"] is None for choice in data.get("choices", []))


def test_a_cut_after_n_events_and_an_abrupt_cut(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(Cut(Text("Hello"), after=2), Cut(Text("Hello"), abrupt=True))
    assert [data["type"] for data in typed(stream(client, MESSAGES))] == [
        "message_start",
        "content_block_start",
    ]
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(RESPONSES, json={"model": "m", "stream": True})


def test_a_json_answer_cut_short(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(Cut(Text("Hello")))
    response = client.post(CHAT, json={"model": "m"})
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


STREAM_ERRORS = {
    CHAT: (
        None,
        {"error": {"message": "Overloaded", "type": "server_error", "param": None, "code": None}},
    ),
    RESPONSES: (
        "error",
        {
            "type": "error",
            "sequence_number": 9,  # all but response.completed came before
            "error": {
                "type": "server_error",
                "code": "server_error",
                "message": "Overloaded",
                "param": None,
            },
        },
    ),
    MESSAGES: (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ),
}


@pytest.mark.parametrize("path", [CHAT, RESPONSES, MESSAGES])
def test_an_error_event_inside_a_200_stream(
    fake: FakeProvider, client: httpx.Client, path: str
) -> None:
    fake.reply(StreamError(Text("Hello", deltas=2), message="Overloaded"))
    events = stream(client, path)
    assert events[-1] == STREAM_ERRORS[path]
    texts = [data for _, data in events if '"llo"' in json.dumps(data)]
    assert texts, "the text before the error was sent"


def test_an_error_event_right_after_the_start(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(StreamError(), StreamError(status=500))
    events = typed(stream(client, MESSAGES))
    assert [event["type"] for event in events] == ["message_start", "error"]
    response = client.post(MESSAGES, json={"model": "m"})  # not streamed: an HTTP error
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "api_error"


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_the_script_running_out(fake: FakeProvider, client: httpx.Client, path: str) -> None:
    response = client.post(path, json={"model": "m", "stream": True})
    assert response.status_code == 500
    assert "the script ran out" in response.json()["error"]["message"]
    assert fake.last().path == f"/v1{path}"


def test_requests_it_cannot_take(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(Text("kept"))
    assert client.post(CHAT, content=b"{not json").status_code == 400
    assert client.get("/models").status_code == 404
    assert fake.pending == 1  # neither took the reply
    assert [(seen.method, seen.body) for seen in fake.requests] == [("POST", None), ("GET", None)]


# --- slow replies -------------------------------------------------------------------------


def test_a_slow_reply_released_by_the_test(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(Slow(Text("late"), seconds=10))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.post, CHAT, json={"model": "m"})
        fake.wait_until(lambda: fake.holding == 1)
        time.sleep(0.05)
        assert not pending.done()  # not a byte yet
        fake.release()
        response = pending.result(timeout=5)
    assert response.json()["choices"][0]["message"]["content"] == "late"
    assert not fake.last().cancelled


def test_a_slow_reply_the_client_gives_up_on(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(Slow(Status(429), seconds=10))
    with pytest.raises(httpx.ReadTimeout):
        client.post(MESSAGES, json={"model": "m"}, timeout=0.3)
    fake.wait_until(lambda: fake.last().cancelled)
    fake.wait_until(lambda: fake.holding == 0)


def test_a_pause_inside_a_stream_flushes_the_events_before_it(
    fake: FakeProvider, client: httpx.Client
) -> None:
    fake.reply(Slow(Text("Hello", deltas=2), seconds=10, after=2))
    with client.stream("POST", RESPONSES, json={"model": "m", "stream": True}) as response:
        lines = response.iter_lines()
        seen = [next(lines) for _ in range(6)]  # two events, each two lines and a blank one
        assert seen[0] == "event: response.created"
        assert seen[3] == "event: response.in_progress"
        fake.wait_until(lambda: fake.holding == 1)  # the rest waits for the release
        fake.release()
        rest = list(lines)
    assert "event: response.completed" in rest
    assert not fake.last().cancelled


def test_a_client_leaving_a_stream_is_noted(fake: FakeProvider, client: httpx.Client) -> None:
    fake.reply(Slow(Text("Hello"), seconds=10, after=1))
    with client.stream("POST", MESSAGES, json={"model": "m", "stream": True}) as response:
        lines = response.iter_lines()  # kept: dropping it would close the response
        assert next(lines) == "event: message_start"
        fake.wait_until(lambda: fake.holding == 1)
        assert not fake.last().cancelled
    fake.wait_until(lambda: fake.last().cancelled)
    fake.wait_until(lambda: fake.holding == 0)


def test_stopping_is_quick_while_a_reply_waits() -> None:
    with ThreadPoolExecutor(1) as pool:
        with serve_fake_providers() as fake:
            fake.reply(Slow(Text("late"), seconds=30))
            pending = pool.submit(httpx.post, f"{fake.base_url}{CHAT}", json={"model": "m"})
            fake.wait_until(lambda: fake.holding == 1)
            began = time.monotonic()
        assert time.monotonic() - began < 3
        assert pending.result(timeout=5).status_code == 200


@pytest.mark.anyio
async def test_cancelling_a_request_mid_wait_from_async_code(fake: FakeProvider) -> None:
    fake.reply(Slow(Text("late"), seconds=10))
    async with httpx.AsyncClient(base_url=fake.base_url, timeout=5) as client:
        with anyio.CancelScope() as scope:

            async def cancel_once_held() -> None:
                await fake.until(lambda: fake.holding == 1)
                scope.cancel()

            async with anyio.create_task_group() as group:
                group.start_soon(cancel_once_held)
                await client.post(CHAT, json={"model": "m"})
        assert scope.cancelled_caught
    await fake.until(lambda: fake.last().cancelled and fake.holding == 0)
