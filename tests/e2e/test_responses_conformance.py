"""The model core's conformance, end to end: a real `sidecar serve` in front of scripted fake
providers of the three wires (RESPONSES.md §4-§6, docs/responses.md).

One fake serves all three wires; the providers file names `chat` (openai-chat), `resp`
(openai-responses) and `claude` (anthropic), each with its own key from an `api_key_env`
variable. The sidecar is read with plain httpx, its streams parsed by hand. Every test
also checks that no provider key shows in what the sidecar answered, streamed, stored
(read back with GET) or logged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.fake_providers import (
    Call,
    Cut,
    FakeProvider,
    Reasoning,
    Slow,
    Status,
    StreamError,
    Text,
    ToolCalls,
    Turn,
    Usage,
)
from tests.support.response_streams import (
    WIRES,
    Streamed,
    assert_clean,
    post,
    provider_history,
    responses_sidecar,
    stream,
    stream_problems,
)
from tests.support.sidecar_process import RunningSidecar

PROVIDER_KEYS = {
    "chat": "sk-chat-" + "Qm7Rt2Vx9Lp4Zw8N",
    "resp": "sk-resp-" + "Hd3Kf8Js1Yb6Tc5G",
    "claude": "sk-ant-" + "Wn4Xe7Ua2Po9Ri3M",
}
KEYS = tuple(PROVIDER_KEYS.values())
ALL = list(WIRES)


def tool(name: str, **properties: str) -> dict[str, Any]:
    """A flat function tool (handed back to the client)."""
    return {
        "type": "function",
        "name": name,
        "description": f"The {name} tool",
        "parameters": {
            "type": "object",
            "properties": {key: {"type": kind} for key, kind in properties.items()},
        },
    }


LOOKUP = tool("lookup", city="string", days="integer")
CONVERT = tool("convert", amount="number", to="string")
SEARCH = tool("search", q="string")
NOW = tool("now")


@pytest.fixture(scope="module")
def sidecar(
    fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSidecar]:
    with responses_sidecar(tmp_path_factory.mktemp("conformance"), fake, PROVIDER_KEYS) as running:
        yield running


@pytest.fixture(scope="module")
def client(sidecar: RunningSidecar) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sidecar.base_url, timeout=15) as opened:
        yield opened


@pytest.fixture(autouse=True)
def fresh(fake: FakeProvider) -> Iterator[None]:
    fake.reset()
    yield
    fake.release()  # no slow reply of a test outlives it


def stored(client: httpx.Client, response_id: str) -> dict[str, Any]:
    got = client.get(f"/v1/responses/{response_id}")
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def clean(
    sidecar: RunningSidecar, client: httpx.Client, *texts: str, ids: tuple[str, ...] = ()
) -> None:
    """No provider key in the answers, the stored responses (read back) or the log."""
    kept = [json.dumps(stored(client, response_id)) for response_id in ids]
    assert_clean(sidecar, KEYS, *texts, *kept)


def streamed_ok(client: httpx.Client, body: dict[str, Any]) -> Streamed:
    """A stream that keeps §6, whatever its end."""
    streamed = stream(client, body)
    assert streamed.status_code == 200, streamed.text
    assert stream_problems(streamed) == []
    return streamed


def calls_of(response: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [
        (item["call_id"], item["name"], json.loads(item["arguments"]))
        for item in response["output"]
        if item["type"] == "function_call"
    ]


def output_result(call_id: str, output: str) -> list[dict[str, Any]]:
    return [{"type": "function_call_output", "call_id": call_id, "output": output}]


# Tool calls, as each wire streams them.


@pytest.mark.parametrize("wire", ALL)
def test_call_ids_come_on_the_first_chunk_only_and_the_deltas_group_by_index(
    wire: str, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    fake.reply(
        ToolCalls(
            [
                Call("lookup", '{"city": "Lima", "days": 3}', id="call_A1", pieces=4),
                Call("convert", '{"amount": 12.5, "to": "EUR"}', id="call_B2", pieces=5),
            ]
        )
    )
    streamed = streamed_ok(
        client, {"model": WIRES[wire].model, "input": "Two things", "tools": [LOOKUP, CONVERT]}
    )
    response = streamed.response
    assert response["status"] == "completed"
    assert calls_of(response) == [
        ("call_A1", "lookup", {"city": "Lima", "days": 3}),
        ("call_B2", "convert", {"amount": 12.5, "to": "EUR"}),
    ]
    assert [d["arguments"] for d in streamed.of("response.function_call_arguments.done")] == [
        '{"city": "Lima", "days": 3}',
        '{"amount": 12.5, "to": "EUR"}',
    ]
    assert stored(client, response["id"])["output"] == response["output"]
    clean(sidecar, client, streamed.text, ids=(response["id"],))


@pytest.mark.parametrize("wire", ALL)
def test_empty_argument_deltas_change_nothing(
    wire: str, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    arguments = '{"q": "tea"}'
    fake.reply(Call("search", arguments, id="call_E1", pieces=["", '{"q": ', "", '"tea"}', ""]))
    streamed = streamed_ok(client, {"model": WIRES[wire].model, "input": "Find", "tools": [SEARCH]})
    assert calls_of(streamed.response) == [("call_E1", "search", {"q": "tea"})]
    assert streamed.response["output"][0]["arguments"] == arguments
    deltas = [d["delta"] for d in streamed.of("response.function_call_arguments.delta")]
    assert "" not in deltas
    assert "".join(deltas) == arguments
    clean(sidecar, client, streamed.text, ids=(streamed.response["id"],))


def test_arguments_that_come_only_in_the_done_event_are_taken_once(
    fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    # Responses wire: no argument delta at all; `.done` and `output_item.done` both carry them.
    fake.reply(Call("lookup", '{"city": "Oslo"}', id="call_D1", pieces=0))
    streamed = streamed_ok(
        client, {"model": WIRES["resp"].model, "input": "Oslo?", "tools": [LOOKUP]}
    )
    sent = fake.last(WIRES["resp"].path).json
    assert sent["stream"] is True
    assert streamed.response["output"][0]["arguments"] == '{"city": "Oslo"}'
    assert [d["arguments"] for d in streamed.of("response.function_call_arguments.done")] == [
        '{"city": "Oslo"}'
    ]
    clean(sidecar, client, streamed.text, ids=(streamed.response["id"],))


def test_parallel_calls_that_all_come_at_index_0_stay_apart(
    fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    fake.reply(
        ToolCalls(
            [
                Call("lookup", '{"city": "Rome"}', id="call_S1", pieces=3),
                Call("lookup", '{"city": "Kyiv"}', id="call_S2", pieces=2),
                Call("convert", '{"amount": 1, "to": "USD"}', id="call_S3", pieces=3),
            ],
            same_index=True,
        )
    )
    streamed = streamed_ok(
        client, {"model": WIRES["chat"].model, "input": "Three", "tools": [LOOKUP, CONVERT]}
    )
    assert calls_of(streamed.response) == [
        ("call_S1", "lookup", {"city": "Rome"}),
        ("call_S2", "lookup", {"city": "Kyiv"}),
        ("call_S3", "convert", {"amount": 1, "to": "USD"}),
    ]
    indices = [d["output_index"] for d in streamed.of("response.output_item.done")]
    assert indices == [0, 1, 2]
    clean(sidecar, client, streamed.text, ids=(streamed.response["id"],))


@pytest.mark.parametrize("wire", ALL)
def test_text_and_a_tool_call_in_one_turn_are_two_items_and_replay_in_order(
    wire: str, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    info = WIRES[wire]
    fake.reply(
        ToolCalls(
            [Call("lookup", '{"city": "Lima"}', id="call_L1", pieces=2)],
            text=Text("Let me check.", deltas=3),
        ),
        Text("Sunny in Lima."),
    )
    first = streamed_ok(
        client, {"model": info.model, "input": "Weather in Lima?", "tools": [LOOKUP]}
    )
    response = first.response
    assert [item["type"] for item in response["output"]] == ["message", "function_call"]
    assert response["output_text"] == "Let me check."
    assert first.text_deltas() == "Let me check."
    second = post(
        client,
        {
            "model": info.model,
            "previous_response_id": response["id"],
            "tools": [LOOKUP],
            "input": output_result("call_L1", "sunny"),
        },
    )
    assert second.status_code == 200, second.text
    assert second.json()["output_text"] == "Sunny in Lima."
    assert provider_history(wire, fake.last(info.path).json) == [
        ("user", "Weather in Lima?"),
        ("assistant", "Let me check."),
        ("call", "call_L1", "lookup", {"city": "Lima"}),
        ("output", "call_L1", "sunny"),
    ]
    clean(sidecar, client, first.text, second.text, ids=(response["id"], second.json()["id"]))


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "json"])
def test_an_anthropic_tool_without_arguments_is_an_empty_object_that_replays(
    streaming: bool, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    info = WIRES["claude"]
    fake.reply(Call("now", id="toolu_now1"), Text("It is noon."))
    body = {"model": info.model, "input": "Time?", "tools": [NOW]}
    if streaming:
        first = streamed_ok(client, body)
        response, text = first.response, first.text
        assert [d["arguments"] for d in first.of("response.function_call_arguments.done")] == ["{}"]
    else:
        answered = post(client, body)
        assert answered.status_code == 200, answered.text
        response, text = answered.json(), answered.text
    assert [item["arguments"] for item in response["output"]] == ["{}"]
    second = post(
        client,
        {
            "model": info.model,
            "previous_response_id": response["id"],
            "tools": [NOW],
            "input": output_result("toolu_now1", "12:00"),
        },
    )
    assert second.status_code == 200, second.text
    sent = fake.last(info.path).json
    assert provider_history("claude", sent) == [
        ("user", "Time?"),
        ("call", "toolu_now1", "now", {}),
        ("output", "toolu_now1", "12:00"),
    ]
    tool_use = sent["messages"][1]["content"][0]
    assert tool_use["input"] == {}  # an object, as Anthropic takes it; never a string
    clean(sidecar, client, text, second.text, ids=(response["id"],))


@pytest.mark.parametrize("wire", ALL)
def test_reasoning_and_a_tool_call_are_two_items_with_their_own_index_and_id(
    wire: str, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    info = WIRES[wire]
    fake.reply(
        ToolCalls(
            [Call("lookup", '{"city": "Quito"}', id="call_Q1", pieces=2)],
            reasoning=Reasoning("Need the weather first.", deltas=3, signature="sig-quito-1"),
        ),
        Text("Mild."),
    )
    first = streamed_ok(client, {"model": info.model, "input": "Quito?", "tools": [LOOKUP]})
    response = first.response
    assert [item["type"] for item in response["output"]] == ["reasoning", "function_call"]
    added = first.of("response.output_item.added")
    done = first.of("response.output_item.done")
    assert [event["output_index"] for event in added] == [0, 1]
    assert [event["item"]["id"] for event in added] == [event["item"]["id"] for event in done]
    assert len({event["item"]["id"] for event in done}) == 2
    assert response["output"][0]["summary"] == [
        {"type": "summary_text", "text": "Need the weather first."}
    ]
    summary = "".join(d["delta"] for d in first.of("response.reasoning_summary_text.delta"))
    assert summary == "Need the weather first."
    second = post(
        client,
        {
            "model": info.model,
            "previous_response_id": response["id"],
            "tools": [LOOKUP],
            "input": output_result("call_Q1", "mild"),
        },
    )
    assert second.status_code == 200, second.text
    sent = fake.last(info.path).json
    thought: list[tuple[Any, ...]] = (
        [] if wire == "chat" else [("reasoning", "Need the weather first.", "sig-quito-1")]
    )
    assert provider_history(wire, sent) == [
        ("user", "Quito?"),
        *thought,
        ("call", "call_Q1", "lookup", {"city": "Quito"}),
        ("output", "call_Q1", "mild"),
    ]
    if wire == "resp":
        assert sent["include"] == ["reasoning.encrypted_content"]
    clean(sidecar, client, first.text, second.text, ids=(response["id"],))


# Streams that end badly.

# Events a fake stream opens with before any model event: none for chat, `response.created`
# and `response.in_progress` for Responses, `message_start` for Anthropic.
OPENING = {"chat": 0, "resp": 2, "claude": 1}


@pytest.mark.parametrize("abrupt", [False, True], ids=["ended", "dropped"])
@pytest.mark.parametrize("wire", ALL)
def test_a_stream_cut_after_text_is_a_failed_response_never_a_completed_one(
    wire: str, abrupt: bool, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    fake.reply(Cut(Text("Half an answer", deltas=3), abrupt=abrupt))
    streamed = streamed_ok(client, {"model": WIRES[wire].model, "input": "Tell me"})
    assert "response.completed" not in streamed.types
    assert streamed.types[-1] == "response.failed"
    response = streamed.response
    assert response["status"] == "failed"
    assert response["error"]["code"] == "provider_stream_broken"
    assert response["error"]["message"]
    assert response["output_text"] == "Half an answer"  # the text so far is kept
    kept = stored(client, response["id"])
    assert kept["status"] == "failed"
    assert kept["output_text"] == "Half an answer"
    clean(sidecar, client, streamed.text, ids=(response["id"],))


def test_a_message_cut_short_is_incomplete_not_completed(
    fake: FakeProvider, client: httpx.Client
) -> None:
    fake.reply(Cut(Text("Half an answer", deltas=3)))
    streamed = stream(client, {"model": WIRES["chat"].model, "input": "Tell me"})
    assert streamed.response["status"] == "failed"
    assert streamed.response["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize("abrupt", [False, True], ids=["ended", "dropped"])
@pytest.mark.parametrize("wire", ALL)
def test_a_stream_cut_before_any_event_is_a_502_not_a_200(
    wire: str, abrupt: bool, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    fake.reply(Cut(Text("never sent"), after=OPENING[wire], abrupt=abrupt))
    streamed = stream(client, {"model": WIRES[wire].model, "input": "Tell me"})
    assert streamed.status_code == 502, streamed.text
    assert streamed.headers["content-type"].startswith("application/json")
    assert json.loads(streamed.text)["error"]["message"]
    clean(sidecar, client, streamed.text)


@pytest.mark.parametrize(
    "abrupt",
    [False, True],
    ids=["ended", "dropped"],
)
@pytest.mark.parametrize("wire", ALL)
def test_a_whole_answer_cut_short_is_a_502(
    wire: str, abrupt: bool, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    fake.reply(Cut(Text("never whole"), abrupt=abrupt))
    answered = post(client, {"model": WIRES[wire].model, "input": "Tell me"})
    assert fake.last(WIRES[wire].path).json.get("stream") is not True
    assert answered.status_code == 502, answered.text
    assert answered.json()["error"]["message"]
    clean(sidecar, client, answered.text)


@pytest.mark.parametrize("wire", ALL)
def test_an_error_event_inside_a_200_stream_fails_the_response_and_keeps_the_text(
    wire: str, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    fake.reply(StreamError(Text("Partial answer", deltas=2), status=500, message="boom"))
    streamed = streamed_ok(client, {"model": WIRES[wire].model, "input": "Go"})
    assert "response.completed" not in streamed.types
    response = streamed.response
    assert streamed.types[-1] == "response.failed"
    assert response["status"] == "failed"
    assert response["error"]["code"]
    assert "boom" in response["error"]["message"]
    assert response["output_text"] == "Partial answer"
    assert streamed.text_deltas() == "Partial answer"
    kept = stored(client, response["id"])
    assert (kept["status"], kept["output_text"]) == ("failed", "Partial answer")
    clean(sidecar, client, streamed.text, ids=(response["id"],))


# Usage.


@pytest.mark.parametrize("with_finish", [False, True], ids=["after-finish", "in-finish"])
def test_chat_usage_that_comes_after_the_finish_chunk_is_counted(
    with_finish: bool, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    usage = Usage(input_tokens=123, output_tokens=45, cached_tokens=7, reasoning_tokens=5)
    fake.reply(Turn(Text("Counted.", deltas=2), usage=usage, usage_with_finish=with_finish))
    streamed = streamed_ok(client, {"model": WIRES["chat"].model, "input": "Count"})
    assert fake.last().json["stream_options"] == {"include_usage": True}
    got = streamed.response["usage"]
    assert (got["input_tokens"], got["output_tokens"], got["total_tokens"]) == (123, 45, 168)
    assert got["input_tokens_details"]["cached_tokens"] == 7
    assert got["output_tokens_details"]["reasoning_tokens"] == 5
    assert stored(client, streamed.response["id"])["usage"] == got
    clean(sidecar, client, streamed.text, ids=(streamed.response["id"],))


# Routing: rate limits, retries, fallbacks, timeouts.


@pytest.mark.parametrize("streaming", [False, True], ids=["json", "stream"])
def test_a_429_before_the_first_byte_goes_to_the_fallback(
    streaming: bool, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    fake.reply(Status(429, retry_after=7), Text("From the fallback"))
    body = {
        "model": WIRES["chat"].model,
        "input": "Hello",
        "fallbacks": [{"model": WIRES["claude"].model}],
    }
    if streaming:
        streamed = streamed_ok(client, body)
        response, text = streamed.response, streamed.text
    else:
        answered = post(client, body)
        assert answered.status_code == 200, answered.text
        response, text = answered.json(), answered.text
    assert response["status"] == "completed"
    assert response["output_text"] == "From the fallback"
    assert response["model"] == WIRES["claude"].model
    assert [r.path for r in fake.requests] == [WIRES["chat"].path, WIRES["claude"].path]
    clean(sidecar, client, text, ids=(response["id"],))


@pytest.mark.parametrize("streaming", [False, True], ids=["json", "stream"])
def test_a_429_without_a_fallback_is_a_real_429_with_retry_after(
    streaming: bool, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    fake.reply(Status(429, retry_after=7))
    body = {"model": WIRES["resp"].model, "input": "Hello"}
    if streaming:
        with client.stream("POST", "/v1/responses", json={**body, "stream": True}) as answer:
            answer.read()
    else:
        answer = post(client, body)
    assert answer.status_code == 429, answer.text
    assert answer.headers["retry-after"] == "7"
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] == "rate_limited"
    assert len(fake.requests) == 1  # no retry asked for: tried once
    clean(sidecar, client, answer.text)


@pytest.mark.parametrize(
    ("header", "value", "seconds"),
    [("retry-after", "1", 1.0), ("retry-after-ms", "600", 0.6)],
    ids=["retry-after", "retry-after-ms"],
)
def test_a_retry_on_429_waits_as_long_as_the_provider_asks(
    header: str,
    value: str,
    seconds: float,
    fake: FakeProvider,
    sidecar: RunningSidecar,
    client: httpx.Client,
) -> None:
    fake.reply(Status(429, headers={header: value}), Text("After the wait"))
    began = time.monotonic()
    answered = post(
        client,
        {
            "model": WIRES["chat"].model,
            "input": "Hello",
            "retry": {"count": 1, "on_codes": [429]},
        },
    )
    took = time.monotonic() - began
    assert answered.status_code == 200, answered.text
    assert answered.json()["output_text"] == "After the wait"
    assert len(fake.requests) == 2
    assert took >= seconds - 0.05, f"retried after {took:.2f} s, asked to wait {seconds} s"
    assert took < seconds + 3
    clean(sidecar, client, answered.text, ids=(answered.json()["id"],))


def test_a_500_not_in_on_codes_is_not_retried_and_is_a_502(
    fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    fake.reply(Status(500, message="upstream fell over"), Text("never asked for"))
    answered = post(
        client,
        {"model": WIRES["claude"].model, "input": "Hi", "retry": {"count": 1, "on_codes": [429]}},
    )
    assert answered.status_code == 502, answered.text
    assert "upstream fell over" in answered.json()["error"]["message"]
    assert len(fake.requests) == 1
    assert fake.pending == 1
    clean(sidecar, client, answered.text)


@pytest.mark.parametrize("wire", ALL)
def test_a_500_in_on_codes_is_retried_and_answered(
    wire: str, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    fake.reply(Status(500), Text("Second time lucky"))
    answered = post(
        client,
        {"model": WIRES[wire].model, "input": "Hi", "retry": {"count": 1, "on_codes": [500]}},
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["output_text"] == "Second time lucky"
    assert [r.path for r in fake.requests] == [WIRES[wire].path] * 2
    clean(sidecar, client, answered.text, ids=(answered.json()["id"],))


@pytest.mark.parametrize("streaming", [False, True], ids=["json", "stream"])
def test_a_provider_slower_than_call_timeout_is_a_504_and_its_call_is_dropped(
    streaming: bool, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    fake.reply(Slow(Text("Too late"), seconds=20))
    body = {"model": WIRES["chat"].model, "input": "Hi", "timeout": {"call_timeout": 300}}
    began = time.monotonic()
    if streaming:
        with client.stream("POST", "/v1/responses", json={**body, "stream": True}) as answer:
            answer.read()
    else:
        answer = post(client, body)
    took = time.monotonic() - began
    assert answer.status_code == 504, answer.text
    assert answer.json()["error"]["message"]
    assert took < 5, f"answered after {took:.1f} s"
    fake.wait_until(lambda: fake.last().cancelled, timeout=5)  # the sidecar hung up on it
    clean(sidecar, client, answer.text)


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "json"])
def test_a_client_that_leaves_before_the_first_event_stops_the_provider_call(
    streaming: bool, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    fake.reply(Slow(Text("Nobody hears this"), seconds=20))
    with pytest.raises(httpx.ReadTimeout):
        client.post(
            "/v1/responses",
            json={"model": WIRES["claude"].model, "input": "Hi", "stream": streaming},
            timeout=httpx.Timeout(15, read=0.5),
        )
    clean(sidecar, client)
    # A cancel takes milliseconds; the fake holds its answer for 20 s.
    fake.wait_until(lambda: fake.last().cancelled, timeout=1.5)


# Continuations and fallbacks keep the conversation.


@pytest.mark.parametrize("wire", ALL)
def test_a_continuation_of_only_a_function_call_output_sends_the_whole_history(
    wire: str, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    info = WIRES[wire]
    fake.reply(Call("lookup", '{"city": "Lima"}', id="call_C1"), Text("Warm in Lima"))
    first = post(
        client,
        {"model": info.model, "instructions": "Be brief.", "input": "Lima?", "tools": [LOOKUP]},
    )
    assert first.status_code == 200, first.text
    paused = first.json()
    assert paused["status"] == "completed"
    assert calls_of(paused) == [("call_C1", "lookup", {"city": "Lima"})]
    second = post(
        client,
        {
            "model": info.model,
            "instructions": "Be brief.",
            "previous_response_id": paused["id"],
            "tools": [LOOKUP],
            "input": output_result("call_C1", "warm"),
        },
    )
    assert second.status_code == 200, second.text
    resumed = second.json()
    assert resumed["output_text"] == "Warm in Lima"
    assert resumed["previous_response_id"] == paused["id"]
    assert provider_history(wire, fake.last(info.path).json) == [
        ("system", "Be brief."),
        ("user", "Lima?"),
        ("call", "call_C1", "lookup", {"city": "Lima"}),
        ("output", "call_C1", "warm"),
    ]
    clean(sidecar, client, first.text, second.text, ids=(paused["id"], resumed["id"]))


@pytest.mark.parametrize(
    ("primary", "backup"),
    [("chat", "claude"), ("claude", "resp"), ("resp", "chat")],
    ids=["chat-to-claude", "claude-to-resp", "resp-to-chat"],
)
def test_a_fallback_to_another_provider_gets_the_whole_history(
    primary: str,
    backup: str,
    fake: FakeProvider,
    sidecar: RunningSidecar,
    client: httpx.Client,
) -> None:
    first_wire, second_wire = WIRES[primary], WIRES[backup]
    fake.reply(
        ToolCalls([Call("lookup", '{"city": "Lima"}', id="call_F1")], text="Checking."),
        Status(503),
        Text("Sunny, Ada."),
    )
    first = post(
        client,
        {
            "model": first_wire.model,
            "instructions": "Be brief.",
            "input": "Weather for Ada in Lima?",
            "tools": [LOOKUP],
        },
    )
    assert first.status_code == 200, first.text
    second = post(
        client,
        {
            "model": first_wire.model,
            "fallbacks": [{"model": second_wire.model}],
            "instructions": "Be brief.",
            "previous_response_id": first.json()["id"],
            "tools": [LOOKUP],
            "input": output_result("call_F1", "sunny"),
        },
    )
    assert second.status_code == 200, second.text
    answered = second.json()
    assert answered["output_text"] == "Sunny, Ada."
    assert answered["model"] == second_wire.model
    assert [r.path for r in fake.requests] == [first_wire.path, first_wire.path, second_wire.path]
    assert provider_history(backup, fake.last(second_wire.path).json) == [
        ("system", "Be brief."),
        ("user", "Weather for Ada in Lima?"),
        ("assistant", "Checking."),
        ("call", "call_F1", "lookup", {"city": "Lima"}),
        ("output", "call_F1", "sunny"),
    ]
    clean(sidecar, client, first.text, second.text, ids=(first.json()["id"], answered["id"]))


# Cancellation.

# Where each fake stream pauses: after its opening events and five text deltas (100
# characters, more than the stream redactor holds back: the length of the longest key).
PAUSE = {"chat": 1 + 5, "resp": 4 + 5, "claude": 3 + 5}
COUNTING = "".join(f"{n:>4} " for n in range(40))  # 200 characters


@pytest.mark.parametrize("wire", ALL)
def test_a_client_that_leaves_mid_stream_stops_the_provider_stream(
    wire: str, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    info = WIRES[wire]
    fake.reply(Slow(Text(COUNTING, deltas=10), seconds=20, after=PAUSE[wire]))
    lines: list[str] = []
    body = {"model": info.model, "input": "Count", "stream": True}
    with client.stream("POST", "/v1/responses", json=body) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            lines.append(line)
            if line == "event: response.output_text.delta":
                break
    # Leaving the block closed the connection mid-stream.
    fake.wait_until(lambda: fake.last(info.path).cancelled, timeout=5)
    created = json.loads(lines[1].removeprefix("data: "))
    assert created["type"] == "response.created"
    # Nothing ran on to a completion; what is stored does not claim one either.
    assert fake.pending == 0
    assert len(fake.requests) == 1
    kept = stored(client, created["response"]["id"])
    assert kept["status"] not in ("in_progress", "completed")
    clean(sidecar, client, "\n".join(lines), ids=(created["response"]["id"],))


# Provider keys.


def test_each_provider_gets_its_own_key_and_nothing_shows_it(
    fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    answers = []
    for wire in ALL:
        fake.reply(Text(f"Hello from {wire}"))
        answered = post(client, {"model": WIRES[wire].model, "input": "Hi"})
        assert answered.status_code == 200, answered.text
        answers.append(answered)
    chat, resp, claude = (fake.last(WIRES[wire].path) for wire in ALL)
    assert chat.header("authorization") == f"Bearer {PROVIDER_KEYS['chat']}"
    assert resp.header("authorization") == f"Bearer {PROVIDER_KEYS['resp']}"
    assert claude.header("x-api-key") == PROVIDER_KEYS["claude"]
    assert claude.header("authorization") is None
    for wire, received in zip(ALL, (chat, resp, claude), strict=True):
        others = [key for name, key in PROVIDER_KEYS.items() if name != wire]
        assert_clean(sidecar, others, json.dumps(received.headers), received.raw.decode())
    ids = tuple(answer.json()["id"] for answer in answers)
    clean(sidecar, client, *(answer.text for answer in answers), ids=ids)


@pytest.mark.parametrize("wire", ALL)
def test_a_provider_error_that_quotes_the_key_is_redacted(
    wire: str, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    key = PROVIDER_KEYS[wire]
    fake.reply(Status(401, message=f"Incorrect API key provided: {key}"))
    answered = post(client, {"model": WIRES[wire].model, "input": "Hi"})
    assert answered.status_code >= 400
    assert "Incorrect API key provided" in answered.json()["error"]["message"]
    clean(sidecar, client, answered.text)


@pytest.mark.parametrize("wire", ALL)
def test_a_stream_error_that_quotes_the_key_is_redacted(
    wire: str, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    key = PROVIDER_KEYS[wire]
    fake.reply(StreamError(Text("Working on it", deltas=2), status=500, message=f"bad key {key}"))
    streamed = stream(client, {"model": WIRES[wire].model, "input": "Hi"})
    assert stream_problems(streamed) == []
    assert streamed.response["status"] == "failed"
    assert "bad key" in streamed.response["error"]["message"]
    clean(sidecar, client, ids=(streamed.response["id"],))  # the store and the log: clean
    clean(sidecar, client, streamed.text)  # the stream


@pytest.mark.parametrize("wire", ALL)
def test_a_later_turn_refused_with_the_key_quoted_is_redacted(
    wire: str, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    key = PROVIDER_KEYS[wire]
    fake.reply(
        Call("current_date", '{"timezone": "UTC"}'),  # a server-side tool: the run goes on
        Status(401, message=f"Incorrect API key provided: {key}"),
    )
    answered = post(
        client,
        {"model": WIRES[wire].model, "input": "Time?", "tools": [{"type": "orq:current_date"}]},
    )
    assert answered.status_code == 200, answered.text
    response = answered.json()
    assert response["status"] == "failed"
    assert response["output"][0]["type"] == "orq:current_date"
    assert "Incorrect API key provided" in response["error"]["message"]
    clean(sidecar, client, ids=(response["id"],))  # the store and the log: clean
    clean(sidecar, client, answered.text)  # the answer


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("wire", ALL)
def test_a_key_the_model_says_is_masked_even_split_across_deltas(
    wire: str, streaming: bool, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    key = PROVIDER_KEYS["claude" if wire == "chat" else "chat"]  # another provider's key
    fake.reply(Text(f"The key is {key}, keep it safe.", deltas=9))
    body = {"model": WIRES[wire].model, "input": "Say the key"}
    if streaming:
        streamed = streamed_ok(client, body)
        response, text = streamed.response, streamed.text
        assert streamed.text_deltas() == response["output_text"]
    else:
        answered = post(client, body)
        assert answered.status_code == 200, answered.text
        response, text = answered.json(), answered.text
    assert response["output_text"].startswith("The key is ")
    assert response["output_text"].endswith(", keep it safe.")
    clean(sidecar, client, text, ids=(response["id"],))
