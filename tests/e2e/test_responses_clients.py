"""Third-party clients against a running sidecar: the `openai` SDK and the `orq-ai-sdk`.

A real `sidecar serve` process, its providers in a providers file pointing at scripted
fake providers on loopback; the clients are the ones users have.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from orq_ai_sdk import Orq

from tests.support.fake_providers import (
    Call,
    FakeProvider,
    Slow,
    Text,
    ToolCalls,
)
from tests.support.response_streams import responses_sidecar
from tests.support.secrets import assert_no_piece
from tests.support.sidecar_process import RunningSidecar

PROVIDER_KEY = "sk-fake-" + "Hy5Pa9Qe2Ws8Ld3K"
USER_SECRET = "tok-" + "Jm4Vx7Rb1Zc6"


@pytest.fixture(scope="module")
def sidecar(
    fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSidecar]:
    with responses_sidecar(
        tmp_path_factory.mktemp("clients"), fake, {"chat": PROVIDER_KEY}
    ) as running:
        yield running


@pytest.fixture
def openai_client(sidecar: RunningSidecar, fake: FakeProvider) -> OpenAI:
    fake.reset()
    return OpenAI(base_url=f"{sidecar.base_url}/v1", api_key="unused", max_retries=0)


def test_the_openai_sdk_creates_and_retrieves_a_response(
    openai_client: OpenAI, sidecar: RunningSidecar, fake: FakeProvider
) -> None:
    fake.reply(Text("Hello from the fake"))
    response = openai_client.responses.create(
        model="chat/m", input="Say hello", instructions="Be brief.", metadata={"run": "1"}
    )
    assert response.status == "completed"
    assert response.output_text == "Hello from the fake"
    assert response.metadata == {"run": "1"}
    assert response.usage is not None
    again = openai_client.responses.retrieve(response.id)
    assert again.output_text == "Hello from the fake"
    sent = fake.last().json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert fake.last().header("authorization") == f"Bearer {PROVIDER_KEY}"
    assert_no_piece(response.model_dump_json(), PROVIDER_KEY)
    assert_no_piece(sidecar.logs(), PROVIDER_KEY)


# The SDK's stream helper serialises its snapshot, warning about item and tool types it
# does not know: orq's `orq:*` types, which orq's own API answers with too.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
def test_the_openai_sdk_streams_a_response_with_a_tool_round(
    openai_client: OpenAI, sidecar: RunningSidecar, fake: FakeProvider
) -> None:
    fake.reply(
        ToolCalls([Call("current_date", '{"timezone": "Asia/Tokyo"}', pieces=3)]),
        Text(f"Done, and {USER_SECRET} stays hidden", deltas=6),
    )
    with openai_client.responses.stream(
        model="chat/m",
        input="What time is it in Tokyo?",
        tools=[{"type": "orq:current_date"}],  # type: ignore[list-item,misc]
        extra_body={"variables": {"token": {"secret": True, "value": USER_SECRET}}},
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert final.status == "completed"
    # Items the openai SDK does not know (orq's tool items) are kept as they came: read
    # them without the serializer's warnings about the types it expected.
    tool = final.output[0].to_dict(warnings=False)
    assert tool["type"] == "orq:current_date"
    result = tool["result"]
    assert isinstance(result, dict)
    assert result["timezone"] == "Asia/Tokyo"
    assert final.output_text.startswith("Done, and ***")
    second_turn = fake.requests[-1].json["messages"]
    assert second_turn[-1]["role"] == "tool"
    assert json.loads(second_turn[-1]["content"])["timezone"] == "Asia/Tokyo"
    stored = openai_client.responses.retrieve(final.id)
    for secret in (USER_SECRET, PROVIDER_KEY):
        assert_no_piece(final.to_json(warnings=False), secret)
        assert_no_piece(stored.to_json(warnings=False), secret)
        assert_no_piece(sidecar.logs(), secret)


def test_the_openai_sdk_reads_a_function_call_and_continues(
    openai_client: OpenAI, fake: FakeProvider
) -> None:
    weather = {
        "type": "function",
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    fake.reply(ToolCalls([Call("weather", '{"city": "Lima"}')]), Text("Warm in Lima"))
    paused = openai_client.responses.create(model="chat/m", input="Weather?", tools=[weather])  # type: ignore[list-item]
    call = paused.output[0]
    assert call.type == "function_call"
    resumed = openai_client.responses.create(
        model="chat/m",
        previous_response_id=paused.id,
        tools=[weather],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "warm"}],
    )
    assert resumed.output_text == "Warm in Lima"


def test_the_orq_sdk_creates_a_response(
    sidecar: RunningSidecar, fake: FakeProvider, tmp_path: Path
) -> None:
    fake.reset()
    fake.reply(Text("Hi from orq's door"))
    with Orq(api_key="unused", server_url=sidecar.base_url) as orq:
        response = orq.responses.create(
            model="chat/m",
            input="Say hi",
            variables={"name": "Ada"},
            instructions="Greet {{name}}.",
        )
    dumped = (
        json.loads(response.model_dump_json()) if hasattr(response, "model_dump_json") else response
    )
    text = json.dumps(dumped)
    assert "Hi from orq's door" in text
    assert fake.last().json["messages"][0]["content"] == "Greet Ada."


def test_a_streamed_response_can_be_read_back_while_it_runs(
    sidecar: RunningSidecar, fake: FakeProvider
) -> None:
    fake.reset()
    fake.reply(Slow(Text("one two three", deltas=3), seconds=20, after=3))
    body = {"model": "chat/m", "input": "Count", "stream": True}
    with (
        httpx.Client(base_url=f"{sidecar.base_url}/v1", timeout=10) as client,
        client.stream("POST", "/responses", json=body) as answer,
    ):
        lines = answer.iter_lines()
        created = next(line for line in lines if line.startswith("data: "))
        response_id = json.loads(created.removeprefix("data: "))["response"]["id"]
        during = client.get(f"/responses/{response_id}").json()
        fake.release()
        rest = list(lines)
    assert during["status"] == "in_progress"
    assert "data: [DONE]" in rest
    assert client_get(sidecar, response_id)["status"] == "completed"


def client_get(sidecar: RunningSidecar, response_id: str) -> dict[str, object]:
    answer: dict[str, object] = httpx.get(f"{sidecar.base_url}/v1/responses/{response_id}").json()
    return answer
