"""The `orq-ai-sdk` against a running sidecar's agents: CRUD as the SDK sends and parses it,
and a response with `model: "agent/<key>"` through `orq.responses.create`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from orq_ai_sdk import Orq, models

from tests.support.fake_providers import Call, FakeProvider, Text, ToolCalls
from tests.support.response_streams import responses_sidecar
from tests.support.secrets import assert_no_piece
from tests.support.sidecar_process import RunningSidecar

PROVIDER_KEY = "sk-fake-" + "Qa8Wd3Ne6Rt1Yu5C"


@pytest.fixture(scope="module")
def sidecar(
    fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSidecar]:
    with responses_sidecar(
        tmp_path_factory.mktemp("orq-sdk-agents"), fake, {"chat": PROVIDER_KEY}
    ) as running:
        yield running


@pytest.fixture
def orq(sidecar: RunningSidecar, fake: FakeProvider) -> Iterator[Orq]:
    fake.reset()
    with Orq(api_key="unused", server_url=sidecar.base_url) as client:
        yield client


def plain(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = json.loads(model.model_dump_json(by_alias=True))
    return dumped


def test_the_sdk_creates_reads_lists_updates_runs_and_deletes_an_agent(
    orq: Orq, fake: FakeProvider, sidecar: RunningSidecar
) -> None:
    created = orq.agents.create(
        key="sdk-helper",
        role="Helper",
        description="Tells the date",
        instructions="Help {{who}}.",
        path="Default",
        model={
            "id": "chat/m",
            "parameters": {"temperature": 0.4},
            "retry": {"count": 2, "on_codes": [429]},
        },
        fallback_models=["chat/backup"],
        variables={"who": "ops"},
        settings={
            "max_iterations": 5,
            "max_execution_time": 60,
            "tools": [{"type": "current_date", "configuration": {"timezone": "Asia/Tokyo"}}],
        },
    )
    assert created.key == "sdk-helper"
    assert created.id.startswith("agent_")
    assert created.model.id == "chat/m"
    assert created.status == "live"
    shown = plain(created)
    assert shown["model"]["fallback_models"] == [{"id": "chat/backup"}]
    assert shown["settings"]["tools"][0]["action_type"] == "orq:current_date"

    retrieved = orq.agents.retrieve(agent_key="sdk-helper")
    assert retrieved.id == created.id
    listed = orq.agents.list(limit=10)  # sent as `limit=10.0`
    assert [agent.key for agent in listed.data] == ["sdk-helper"]
    assert listed.has_more is False

    updated = orq.agents.update(agent_key="sdk-helper", instructions="Help {{who}} briefly.")
    assert updated.instructions == "Help {{who}} briefly."
    assert plain(updated)["settings"]["max_iterations"] == 5

    fake.reply(ToolCalls([Call("current_date", "{}")]), Text("It is a fine day in Tokyo."))
    response = orq.responses.create(
        model="agent/sdk-helper", input="What day is it?", variables={"who": "sales"}
    )
    text = json.dumps(plain(response))
    assert "It is a fine day in Tokyo." in text
    first = fake.requests[0].json
    assert first["messages"][0]["content"] == "Help sales briefly."
    assert first["temperature"] == 0.4
    assert "timezone" not in first["tools"][0]["function"]["parameters"].get("properties", {})
    tool_output = next(
        message for message in fake.requests[1].json["messages"] if message["role"] == "tool"
    )
    assert json.loads(tool_output["content"])["timezone"] == "Asia/Tokyo"
    assert_no_piece(text, PROVIDER_KEY)

    orq.agents.delete(agent_key="sdk-helper")
    with pytest.raises(models.RetrieveAgentRequestAgentsResponseBody) as raised:
        orq.agents.retrieve(agent_key="sdk-helper")  # the SDK's typed "agent not found"
    assert raised.value.data.message == "no agent with key or id 'sdk-helper'"
    assert_no_piece(sidecar.logs(), PROVIDER_KEY)
