"""The OpenResponses compliance cases, run against a real `sidecar serve` whose providers are
scripted fakes of the three wires.

Re-expressed from `openresponses/openresponses` `src/lib/compliance-tests.ts` (with
`src/lib/sse-parser.ts`, at commit 5e23378). What the suite does, done the same here:

- POST `{baseUrl}/responses` with the case's body and `stream` set to the case's mode
  (`baseUrl` is the sidecar's `/v1`), with a bearer key;
- an answer that is not OK fails the case: `HTTP <status>: <body>`;
- a stream is read event by event: each `data:` JSON other than `[DONE]` is checked
  against the union of the streaming event schemas (its failures are the
  `streamingSchema` validator's errors); the final response is the data of the
  `response.completed` or `response.failed` event;
- the response is checked against ResponseResource (`path: message` per issue, and
  the case fails there), then the case's validators run: `hasOutput`,
  `hasOutputType(type)`, `completedStatus`, `streamingEvents`, `streamingSchema`.

The schemas are in `tests.support.openresponses_schema`. The suite has six templates
(basic, streaming, system prompt, tool calling, image input, multi-turn); "streamed tool
calling" is the tool-calling template streamed, with the validators of both. Each case
runs once per wire (Chat Completions, Responses, Anthropic Messages behind the sidecar).

Beyond the suite, each case also checks RESPONSES.md §6 for its stream (event order,
sequence numbers from 0, ids matching between `added` and `done`, one terminal event,
`[DONE]`), what the fake provider was asked, and that no provider key shows in the
answer, the stream, the stored response or the sidecar's log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support.fake_providers import (
    Call,
    FakeProvider,
    Reasoning,
    Reply,
    Text,
    Turn,
)
from tests.support.openresponses_schema import event_errors, response_errors
from tests.support.response_streams import (
    WIRES,
    Streamed,
    assert_clean,
    provider_history,
    read_events,
    responses_sidecar,
    stream_problems,
)
from tests.support.sidecar_process import RunningSidecar

PROVIDER_KEYS = {
    "chat": "sk-chat-" + "Bt6Yn1Kq8Ws3Fe5J",
    "resp": "sk-resp-" + "Ug2Ma7Lx4Ov9Dr1P",
    "claude": "sk-ant-" + "Zi5Hc8Nt3Ew6Gy2Q",
}
KEYS = tuple(PROVIDER_KEYS.values())


# The suite's validators.


@dataclass
class Context:
    streaming: bool
    streamed: Streamed | None = None
    stream_errors: list[str] = field(default_factory=list)


Validator = Callable[[dict[str, Any], Context], list[str]]


def has_output(response: dict[str, Any], context: Context) -> list[str]:
    return [] if response.get("output") else ["Response has no output items"]


def has_output_type(kind: str) -> Validator:
    def check(response: dict[str, Any], context: Context) -> list[str]:
        if any(item.get("type") == kind for item in response.get("output") or []):
            return []
        return [f'Expected output item of type "{kind}" but none found']

    return check


def completed_status(response: dict[str, Any], context: Context) -> list[str]:
    status = response.get("status")
    return [] if status == "completed" else [f'Expected status "completed" but got "{status}"']


def streaming_events(response: dict[str, Any], context: Context) -> list[str]:
    if not context.streaming:
        return []
    if context.streamed is None or not context.streamed.events:
        return ["No streaming events received"]
    return []


def streaming_schema(response: dict[str, Any], context: Context) -> list[str]:
    if not context.streaming or context.streamed is None:
        return []
    return context.stream_errors


# The suite's templates, and what the fake provider answers and is asked for each.

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a location",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {
                "type": "string",
                "description": "The city and state, e.g. San Francisco, CA",
            }
        },
        "required": ["location"],
    },
}
IMAGE_URL = "https://www.google.com/images/branding/googlelogo/2x/googlelogo_color_272x92dp.png"
PIRATE = "You are a pirate. Always respond in pirate speak."
ALICE = "Hello Alice! Nice to meet you. How can I help you today?"
WEATHER_ASKED = "What's the weather like in San Francisco?"


@dataclass(frozen=True)
class Case:
    id: str
    name: str
    body: dict[str, Any]
    validators: tuple[Validator, ...]
    reply: Reply
    asked: list[tuple[Any, ...]]  # the conversation the provider must get
    streaming: bool = False


def user(content: Any) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": content}


CASES = [
    Case(
        "basic-response",
        "Basic Text Response",
        {"input": [user("Say hello in exactly 3 words.")]},
        (has_output, completed_status),
        Text("Hello there, friend.", deltas=3),
        [("user", "Say hello in exactly 3 words.")],
    ),
    Case(
        "streaming-response",
        "Streaming Response",
        {"input": [user("Count from 1 to 5.")]},
        (streaming_events, streaming_schema, completed_status),
        Text("1, 2, 3, 4, 5", deltas=5),
        [("user", "Count from 1 to 5.")],
        streaming=True,
    ),
    Case(
        "system-prompt",
        "System Prompt",
        {
            "input": [
                {"type": "message", "role": "system", "content": PIRATE},
                user("Say hello."),
            ]
        },
        (has_output, completed_status),
        Text("Ahoy, matey!", deltas=2),
        [("system", PIRATE), ("user", "Say hello.")],
    ),
    Case(
        "tool-calling",
        "Tool Calling",
        {"input": [user(WEATHER_ASKED)], "tools": [WEATHER_TOOL]},
        (has_output, has_output_type("function_call")),
        Call("get_weather", '{"location": "San Francisco, CA"}', pieces=3),
        [("user", WEATHER_ASKED)],
    ),
    Case(
        "streaming-tool-calling",
        "Streamed Tool Calling (the tool-calling template, streamed)",
        {"input": [user(WEATHER_ASKED)], "tools": [WEATHER_TOOL]},
        (streaming_events, streaming_schema, has_output, has_output_type("function_call")),
        Call("get_weather", '{"location": "San Francisco, CA"}', pieces=3),
        [("user", WEATHER_ASKED)],
        streaming=True,
    ),
    Case(
        "image-input",
        "Image Input",
        {
            "input": [
                user(
                    [
                        {
                            "type": "input_text",
                            "text": "What do you see in this image? Answer in one sentence.",
                        },
                        {"type": "input_image", "image_url": IMAGE_URL},
                    ]
                )
            ]
        },
        (has_output, completed_status),
        Text("A colourful logo on a white background.", deltas=2),
        [
            ("user", "What do you see in this image? Answer in one sentence."),
            ("image", IMAGE_URL),
        ],
    ),
    Case(
        "multi-turn",
        "Multi-turn Conversation",
        {
            "input": [
                user("My name is Alice."),
                {"type": "message", "role": "assistant", "content": ALICE},
                user("What is my name?"),
            ]
        },
        (has_output, completed_status),
        Text("Your name is Alice.", deltas=2),
        [("user", "My name is Alice."), ("assistant", ALICE), ("user", "What is my name?")],
    ),
]
BY_ID = {case.id: case for case in CASES}


@dataclass
class Result:
    """A case's outcome as the suite reports it, and what it saw."""

    errors: list[str]
    response: Any = None
    streamed: Streamed | None = None
    text: str = ""


def run_case(client: httpx.Client, case: Case, model: str) -> Result:
    """`runTest`: the request, the schema check, then the case's validators."""
    body = {"model": model, **case.body, "stream": case.streaming}
    headers = {"Authorization": "Bearer compliance-key"}
    with client.stream("POST", "/responses", json=body, headers=headers) as answer:
        text = answer.read().decode()
    if not answer.is_success:
        return Result([f"HTTP {answer.status_code}: {text}"], text=text)
    context = Context(case.streaming)
    if case.streaming:
        streamed = Streamed(answer.status_code, answer.headers, text)
        read_events(text.split("\n"), streamed)
        context.streamed = streamed
        context.stream_errors = [
            *(f"Failed to parse event data: {data}" for data in streamed.stray),
            *(error for _, data in streamed.events for error in event_errors(data)),
        ]
        final = next(
            (
                data.get("response")
                for name, data in reversed(streamed.events)
                if data.get("type") in ("response.completed", "response.failed")
            ),
            None,
        )
    else:
        final = json.loads(text)
    issues = response_errors(final)
    if issues:
        return Result(issues, final, context.streamed, text)
    assert isinstance(final, dict)  # it passed the schema
    errors = [error for validator in case.validators for error in validator(final, context)]
    return Result(errors, final, context.streamed, text)


@pytest.fixture(scope="module")
def sidecar(
    fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSidecar]:
    with responses_sidecar(tmp_path_factory.mktemp("compliance"), fake, PROVIDER_KEYS) as running:
        yield running


@pytest.fixture(scope="module")
def client(sidecar: RunningSidecar) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sidecar.base_url}/v1", timeout=15) as opened:
        yield opened


@pytest.fixture(autouse=True)
def fresh(fake: FakeProvider) -> None:
    fake.reset()


def run_checked(
    client: httpx.Client, fake: FakeProvider, sidecar: RunningSidecar, case: Case, wire: str
) -> Result:
    """Run a case, and check what the suite does not: §6, the provider's side, the keys."""
    info = WIRES[wire]
    fake.reply(case.reply)
    result = run_case(client, case, info.model)
    assert result.response is not None, result.errors
    received = fake.last(info.path)
    assert received.json.get("stream", False) is case.streaming
    assert provider_history(wire, received.json) == case.asked
    if "tools" in case.body:
        sent = received.json["tools"]
        names = [tool.get("name") or tool.get("function", {}).get("name") for tool in sent]
        assert names == ["get_weather"]
    if result.streamed is not None:
        assert stream_problems(result.streamed) == []
    stored = client.get(f"/responses/{result.response['id']}")
    assert stored.status_code == 200, stored.text
    assert stored.json()["output"] == result.response["output"]
    assert_clean(sidecar, KEYS, result.text, stored.text)
    return result


@pytest.mark.parametrize("wire", list(WIRES))
@pytest.mark.parametrize(
    "case_id",
    [case.id for case in CASES],
)
def test_compliance_case(
    case_id: str, wire: str, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    result = run_checked(client, fake, sidecar, BY_ID[case_id], wire)
    assert result.errors == []


@pytest.mark.parametrize("streaming", [False, True], ids=["json", "stream"])
def test_a_response_that_asked_for_reasoning_keeps_the_schema(
    streaming: bool, fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    """Beyond the suite's cases: the basic case with `reasoning: {effort}` set."""
    basic = BY_ID["basic-response" if not streaming else "streaming-response"]
    case = Case(
        f"{basic.id}-reasoning",
        f"{basic.name} with reasoning",
        {**basic.body, "reasoning": {"effort": "low"}},
        basic.validators,
        Turn(Reasoning("A short thought.", deltas=2), Text("Hello there, friend.", deltas=2)),
        basic.asked,
        streaming=streaming,
    )
    result = run_checked(client, fake, sidecar, case, "chat")
    assert fake.last().json["reasoning_effort"] == "low"
    assert [item["type"] for item in result.response["output"]] == ["reasoning", "message"]
    assert result.errors == []


def _without(data: dict[str, Any], *path: Any) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(data))
    *parents, last = path
    target = copy
    for part in parents:
        target = target[part]
    del target[last]
    return copy


def _with(data: dict[str, Any], value: Any, *path: Any) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(data))
    *parents, last = path
    target = copy
    for part in parents:
        target = target[part]
    target[last] = value
    return copy


def test_the_checks_refuse_what_the_suite_refuses(
    fake: FakeProvider, sidecar: RunningSidecar, client: httpx.Client
) -> None:
    """The re-expressed schemas and §6 checks are not vacuous: broken copies of a real
    answer and stream fail them."""
    result = run_checked(client, fake, sidecar, BY_ID["streaming-response"], "chat")
    assert result.errors == []
    assert result.streamed is not None
    response = result.response
    broken = {
        "no usage key": _without(response, "usage"),
        "created_at a string": _with(response, "now", "created_at"),
        "unknown truncation": _with(response, "sometimes", "truncation"),
        "a message without id": _without(response, "output", 0, "id"),
        "a part without annotations": _without(response, "output", 0, "content", 0, "annotations"),
        "an item of no known type": _with(response, {"type": "thing", "id": "x"}, "output", 0),
        "usage without details": _without(response, "usage", "input_tokens_details"),
    }
    for what, data in broken.items():
        assert response_errors(data), f"the schema check took a response with {what}"
    deltas = [data for name, data in result.streamed.events if name.endswith("text.delta")]
    assert event_errors(_without(deltas[0], "item_id"))
    assert event_errors(_with(deltas[0], "1", "sequence_number"))
    assert event_errors({"type": "response.unheard_of", "sequence_number": 0})
    events = result.streamed.events
    renumbered = Streamed(200, result.streamed.headers, result.streamed.text, done=True)
    renumbered.events = [events[0], events[2], events[1], *events[3:]]
    assert stream_problems(renumbered)
    twice = Streamed(200, result.streamed.headers, result.streamed.text, done=True)
    twice.events = [*events, events[-1]]
    assert stream_problems(twice)
    undone = Streamed(200, result.streamed.headers, result.streamed.text, done=False)
    undone.events = list(events)
    assert stream_problems(undone)
