"""The responder and the agent loop against a scripted provider (the test seam of the core).

The provider replays queued turns and records what it was asked; the tools are the real
registry and executor; the store is a real SQLite file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from sidecar.database.sqlite import SqliteDatabase
from sidecar.deadlines import DeadlineWatch
from sidecar.errors import BadRequest
from sidecar.execution import Executor
from sidecar.llm.providers.base import (
    Finish,
    ModelEvent,
    ModelRequest,
    ProviderError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from sidecar.llm.providers.catalog import Price, ProviderSpec
from sidecar.llm.responder import ModelCallFailed, Responder
from sidecar.llm.responses import parse_request
from sidecar.llm.routing import Router
from sidecar.llm.store import RESPONSES_SCHEMA, ResponseStore
from sidecar.metrics import Metrics
from sidecar.registry.crypto import SecretBox
from sidecar.registry.factory import HttpLimits, ToolFactory
from sidecar.registry.references import ToolExecutor
from sidecar.registry.registry import Registry
from sidecar.registry.store import REGISTRY_SCHEMA, ToolStore
from sidecar.templating import PlaceholderRenderer
from tests.support.secrets import assert_no_piece
from tools.base import Secret
from tools.current_date import CurrentDateTool

pytestmark = pytest.mark.anyio

SECRET = "sk-test-" + "Zq81Lm0Pw3Xv5Ty7"
Turn = list[ModelEvent] | ProviderError


def text(words: str, usage: Usage | None = None) -> list[ModelEvent]:
    return [*(TextDelta(word) for word in words.split("|")), Finish("stop", usage)]


def calls(*named: tuple[str, str]) -> list[ModelEvent]:
    events: list[ModelEvent] = []
    for index, (name, arguments) in enumerate(named):
        events += [
            ToolCallStart(index, f"call_{index}_{name}", name),
            ToolCallDelta(index, arguments),
        ]
    return [*events, Finish("tool_calls", Usage(10, 2))]


@dataclass
class Scripted:
    """A provider that replays queued turns and records each request."""

    turns: list[Turn] = field(default_factory=list)
    asked: list[ModelRequest] = field(default_factory=list)
    reasoning_provider: str = "scripted"

    async def stream(
        self, request: ModelRequest, *, streaming: bool = True
    ) -> AsyncIterator[ModelEvent]:
        self.asked.append(request)
        turn = self.turns.pop(0) if self.turns else ProviderError("script ran out", status=500)
        if isinstance(turn, ProviderError):
            raise turn
        for event in turn:
            yield event


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Responder, Scripted, Scripted]]:
    main, backup = Scripted(), Scripted()
    specs = {
        "main": ProviderSpec(
            "main", "openai-chat", "http://x", key=Secret(SECRET), prices={"m": Price(1.0, 2.0)}
        ),
        "backup": ProviderSpec("backup", "anthropic", "http://y", needs_key=False),
        "keyless": ProviderSpec("keyless", "openai-chat", "http://z", key_setting="KEYLESS_KEY"),
    }
    factory = ToolFactory(SecretBox(Fernet.generate_key()), HttpLimits())
    deadlines = DeadlineWatch(resolution=0.01)
    async with (
        SqliteDatabase(tmp_path / "tools.sqlite3", REGISTRY_SCHEMA) as tools_db,
        SqliteDatabase(tmp_path / "responses.sqlite3", RESPONSES_SCHEMA) as responses_db,
        ResponseStore(responses_db) as store,
        httpx.AsyncClient() as http,
    ):
        registry = Registry(
            store=ToolStore(tools_db), factory=factory, builtins={"current_date": CurrentDateTool()}
        )
        executor: ToolExecutor = Executor(
            resolver=registry,
            http=http,
            renderer=PlaceholderRenderer(),
            metrics=Metrics(),
            deadlines=deadlines,
            max_timeout=60.0,
        )

        async def no_sleep(seconds: float) -> None:
            pass

        router = Router({"main": main, "backup": backup}, sleep=no_sleep)
        yield (
            Responder(
                router=router, specs=specs, registry=registry, executor=executor, store=store
            ),
            main,
            backup,
        )
    deadlines.close()


async def respond(responder: Responder, **body: Any) -> dict[str, Any]:
    return await responder.respond(parse_request({"model": "main/m", **body}))


async def test_a_text_answer_completes_with_usage_and_cost(setup: Any) -> None:
    responder, main, _ = setup
    main.turns.append(text("Hello| world", Usage(1000, 500)))
    response = await respond(
        responder, input="hi", instructions="Be {{tone}}.", variables={"tone": "brief"}
    )
    assert response["status"] == "completed"
    assert response["output_text"] == "Hello world"
    assert response["usage"]["total_tokens"] == 1500
    assert response["usage"]["total_cost"] == pytest.approx(0.002)
    assert main.asked[0].instructions == "Be brief."
    assert await responder.get(response["id"]) == response


async def test_a_server_side_tool_runs_and_its_result_goes_back_to_the_model(setup: Any) -> None:
    responder, main, _ = setup
    main.turns += [calls(("current_date", '{"timezone": "Europe/Paris"}')), text("done")]
    response = await respond(responder, input="date?", tools=[{"type": "orq:current_date"}])
    tool, message = response["output"]
    assert (tool["type"], tool["status"]) == ("orq:current_date", "completed")
    assert tool["result"]["timezone"] == "Europe/Paris"
    second = main.asked[1].items
    assert second[-1].call_id == "call_0_current_date"  # the tool's output, for the model
    assert json.loads(second[-1].output)["timezone"] == "Europe/Paris"
    assert message["content"][0]["text"] == "done"


async def test_a_function_tool_ends_the_run_and_a_continuation_resumes_it(setup: Any) -> None:
    responder, main, _ = setup
    weather = {"type": "function", "name": "weather", "parameters": {"type": "object"}}
    main.turns += [calls(("weather", '{"city": "Oslo"}')), text("Sunny in Oslo")]
    paused = await respond(responder, input="weather?", tools=[weather])
    assert paused["status"] == "completed"  # as orq's SDK and OpenAI answer: the calls wait
    assert paused["output"][0]["type"] == "function_call"
    with pytest.raises(BadRequest, match="waits for the output"):
        await respond(
            responder, previous_response_id=paused["id"], input=[{"role": "user", "content": "?"}]
        )
    with pytest.raises(BadRequest, match="unknown call_id 'nope'"):
        await respond(
            responder,
            previous_response_id=paused["id"],
            input=[{"type": "function_call_output", "call_id": "nope", "output": "x"}],
        )
    resumed = await respond(
        responder,
        previous_response_id=paused["id"],
        tools=[weather],
        input=[{"type": "function_call_output", "call_id": "call_0_weather", "output": "sunny"}],
    )
    assert resumed["status"] == "completed"
    assert resumed["output_text"] == "Sunny in Oslo"
    history = main.asked[-1].items
    assert [type(item).__name__ for item in history] == [
        "MessageItem", "FunctionCallItem", "FunctionOutputItem",
    ]  # fmt: skip


async def test_a_json_schema_tool_call_is_the_answer_handed_back(setup: Any) -> None:
    responder, main, _ = setup
    schema = {"type": "object", "properties": {"rating": {"type": "integer"}}}
    answer = {"name": "verdict", "description": "The verdict", "schema": schema}
    main.turns.append(calls(("verdict", '{"rating": 4}')))
    response = await respond(
        responder, input="rate it", tools=[{"type": "json_schema", "json_schema": answer}]
    )
    (call,) = response["output"]
    assert (call["type"], call["name"]) == ("function_call", "verdict")
    assert json.loads(call["arguments"]) == {"rating": 4}
    assert len(main.asked) == 1  # nothing ran: the model's call is the structured answer
    offered = main.asked[0].tools[0]
    assert (offered.name, offered.parameters) == ("verdict", schema)


async def test_a_failing_model_falls_back_and_keeps_the_history(setup: Any) -> None:
    responder, main, backup = setup
    main.turns.append(ProviderError("down", status=503, retryable=True))
    backup.turns.append(text("from backup"))
    response = await respond(responder, input="hi", fallbacks=[{"model": "backup/b"}])
    assert response["model"] == "backup/b"
    assert backup.asked[0].model == "b"
    assert backup.asked[0].items == main.asked[0].items


async def test_retries_honour_the_codes_asked_for(setup: Any) -> None:
    responder, main, _ = setup
    main.turns += [ProviderError("busy", status=429, retryable=True, retry_after=0.01), text("ok")]
    response = await respond(responder, input="hi", retry={"count": 2, "on_codes": [429]})
    assert response["output_text"] == "ok"
    main.turns += [ProviderError("bad", status=400)]
    with pytest.raises(ModelCallFailed) as caught:
        await respond(responder, input="hi", retry={"count": 3, "on_codes": [400, 429]})
    assert caught.value.status == 400, "a 400 is never retried"


async def test_a_rate_limit_with_no_fallback_is_a_429(setup: Any) -> None:
    responder, main, _ = setup
    main.turns.append(ProviderError("slow down", status=429, retryable=True, retry_after=3))
    with pytest.raises(ModelCallFailed) as caught:
        await respond(responder, input="hi")
    assert (caught.value.status, caught.value.retry_after) == (429, 3)


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("nobody/m", "unknown provider 'nobody'"),
        ("keyless/m", "set KEYLESS_KEY"),
        ("nomodel", "provider/model"),
    ],
)
async def test_a_model_that_cannot_be_asked_is_a_400_and_nothing_is_sent(
    setup: Any, model: str, says: str
) -> None:
    responder, main, _ = setup
    with pytest.raises(BadRequest, match=says):
        await responder.respond(parse_request({"model": model, "input": "hi"}))
    assert not main.asked


async def test_limits_end_the_run_as_incomplete_keeping_the_output(setup: Any) -> None:
    responder, main, _ = setup
    main.turns += [calls(("current_date", "{}")) for _ in range(3)]
    response = await respond(
        responder, input="loop", tools=[{"type": "orq:current_date"}], limits={"max_iterations": 2}
    )
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_iterations"}
    assert len(response["output"]) == 2
    main.turns.clear()
    main.turns += [calls(("current_date", "{}"), ("current_date", "{}"))]
    capped = await respond(
        responder, input="two", tools=[{"type": "orq:current_date"}], max_tool_calls=1
    )
    assert capped["incomplete_details"] == {"reason": "max_tool_calls"}


async def test_a_secret_never_reaches_the_prompt_the_answer_or_the_store(
    setup: Any, tmp_path: Path
) -> None:
    responder, main, _ = setup
    user_secret = "usr-" + "Hk29Qe8Lz4Wn"
    main.turns.append(text(f"leaking {user_secret[:6]}|{user_secret[6:]} and {SECRET}"))
    response = await respond(
        responder,
        input="hi",
        instructions="key={{key}} tone={{tone}}",
        variables={"key": {"secret": True, "value": user_secret}, "tone": "dry"},
    )
    assert main.asked[0].instructions == "key= tone=dry"
    assert response["variables"] == {"key": {"secret": True}, "tone": "dry"}
    for secret in (user_secret, SECRET):
        assert_no_piece(json.dumps(response), secret)
        assert_no_piece((tmp_path / "responses.sqlite3").read_bytes().decode("latin-1"), secret)


async def test_unknown_and_unsupported_fields_are_400s_naming_them() -> None:
    with pytest.raises(BadRequest, match="unknown parameter 'colour'"):
        parse_request({"model": "main/m", "input": "x", "colour": 1})
    with pytest.raises(BadRequest, match="'guardrails' is not supported") as caught:
        parse_request({"model": "main/m", "input": "x", "guardrails": []})
    assert caught.value.code == "unsupported_parameter"


@pytest.mark.parametrize(
    ("engine", "template"),
    [
        ("text", "Hi {{name}}, key [{{key}}], {{missing}}done"),
        ("jinja", "Hi {{ name }}, key [{{ key }}], {{ missing }}{% if name %}done{% endif %}"),
        ("mustache", "Hi {{name}}, key [{{key}}], {{missing}}{{#name}}done{{/name}}"),
    ],
)
async def test_instructions_render_by_each_engine_without_secrets(
    setup: Any, engine: str, template: str
) -> None:
    responder, main, _ = setup
    main.turns.append(text("ok"))
    await respond(
        responder,
        input="hi",
        instructions=template,
        template_engine=engine,
        variables={"name": "Ada", "key": {"secret": True, "value": SECRET}},
    )
    assert main.asked[0].instructions == "Hi Ada, key [], done"


async def test_a_template_that_breaks_the_sandbox_or_does_not_parse_is_a_400(setup: Any) -> None:
    responder, main, _ = setup
    with pytest.raises(BadRequest, match="unsafe"):
        await respond(
            responder, input="x", instructions="{{ ''.__class__.__mro__ }}", template_engine="jinja"
        )
    with pytest.raises(BadRequest, match="mustache"):
        await respond(
            responder, input="x", instructions="{{#a}}x{{/b}}", template_engine="mustache"
        )
    assert not main.asked


async def test_store_false_keeps_nothing(setup: Any, tmp_path: Path) -> None:
    responder, main, _ = setup
    main.turns.append(text("not kept"))
    response = await respond(responder, input="hi", store=False)
    assert response["store"] is False
    assert await responder.get(response["id"]) is None
    with pytest.raises(BadRequest, match="no stored response"):
        await respond(responder, input="again", previous_response_id=response["id"])


async def test_the_cost_limit_ends_the_run_with_the_output_so_far(setup: Any) -> None:
    responder, main, _ = setup
    # 1,000,000 input tokens at $1 per million: each turn costs $1.
    main.turns += [calls(("current_date", "{}")), text("never asked")]
    main.turns[0][-1] = Finish("tool_calls", Usage(1_000_000, 0))
    response = await respond(
        responder, input="x", tools=[{"type": "orq:current_date"}], limits={"max_cost": 0.5}
    )
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_cost"}
    assert response["usage"]["total_cost"] == pytest.approx(1.0)
    assert response["output"][0]["status"] == "completed", "the turn's tool still ran"
    assert len(main.asked) == 1
