"""Agents (`/v2/agents` and `model: "agent/<key>"`): manifests, the API, and each field's effect.

Scripted fake providers on loopback answer the model turns; the reflecting upstream
plays the service an HTTP tool calls. Each test reads what the provider was sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.reflecting_upstream import ReflectingUpstream
from tests.api.support import assert_error, http_tool, make_settings, open_client
from tests.support.fake_providers import (
    Call,
    FakeProvider,
    Status,
    Text,
    ToolCalls,
    serve_fake_providers,
)
from tests.support.secrets import assert_no_piece

pytestmark = pytest.mark.anyio

TOKEN = "agent-" + "Vx4Kq9Zr2Lm7Tw"

MANIFEST_AGENT = """
key: helper
description: A helper from a manifest
instructions: "You help {{team}}."
model: chat/primary
variables:
  team: support
settings:
  max_iterations: 3
  tools:
    - type: current_date
      configuration: {timezone: Europe/Amsterdam}
"""


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with serve_fake_providers() as running:
        yield running


@pytest.fixture
async def client(tmp_path: Path, fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    providers = tmp_path / "providers.yaml"
    entries = [
        {"name": name, "wire": "openai-chat", "base_url": fake.base_url} for name in ("chat", "alt")
    ]
    providers.write_text(json.dumps({"providers": entries}))
    agents = tmp_path / "manifests" / "agents"
    agents.mkdir(parents=True)
    (agents / "helper.yaml").write_text(MANIFEST_AGENT)
    settings = make_settings(tmp_path, providers_file=providers)
    async with open_client(settings) as running:
        yield running


def agent(key: str = "writer", **fields: Any) -> dict[str, Any]:
    """A `/v2/agents` body as orq's SDK sends it."""
    return {
        "key": key,
        "role": "Writer",
        "description": "Writes short answers",
        "instructions": "Answer in one sentence.",
        "path": "Default",
        "model": "chat/primary",
        "settings": {"max_iterations": 5, "max_execution_time": 60, "tools": []},
        **fields,
    }


def sent_messages(fake: FakeProvider, index: int = -1) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = fake.requests[index].json["messages"]
    return messages


# The registry of agents.


async def test_a_manifest_agent_is_listed_and_read_only(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v2/agents")).json()
    assert listed["object"] == "list"
    (helper,) = listed["data"]
    assert helper["key"] == "helper"
    assert helper["_id"].startswith("agent_")
    assert helper["source"] == "internal"
    assert helper["status"] == "live"
    assert helper["model"] == {"id": "chat/primary", "fallback_models": []}
    (tool,) = helper["settings"]["tools"]
    assert tool["action_type"] == "orq:current_date"
    assert (await client.get(f"/v2/agents/{helper['_id']}")).json()["key"] == "helper"
    changed = await client.patch("/v2/agents/helper", json={"description": "changed"})
    assert_error(changed, 409, code="read_only_agent")
    assert_error(await client.delete("/v2/agents/helper"), 409, code="read_only_agent")


async def test_agents_are_created_read_updated_listed_and_deleted(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    tool = await client.post("/v2/tools", json=http_tool("lookup", upstream.url("/lookup")))
    assert tool.status_code == 200, tool.text
    body = agent(
        settings={
            "max_iterations": 5,
            "tools": [{"type": "http", "key": "lookup"}, {"type": "google_search"}],
        },
        fallback_models=["alt/backup", {"id": "chat/other", "retry": {"count": 2.0}}],
    )
    created = await client.post("/v2/agents", json=body)
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["display_name"] == "writer"
    assert shown["model"]["fallback_models"] == [
        {"id": "alt/backup"},
        {"id": "chat/other", "retry": {"count": 2, "on_codes": [429]}},
    ]
    http_entry, search_entry = shown["settings"]["tools"]
    assert http_entry["id"] == tool.json()["_id"]
    assert (http_entry["key"], http_entry["action_type"]) == ("lookup", "orq:http")
    assert search_entry["id"] == "orq:google_search"
    assert shown["settings"]["max_iterations"] == 5

    again = await client.post("/v2/agents", json=body)
    assert_error(again, 409, code="conflict")

    changed = await client.patch(
        "/v2/agents/writer", json={"instructions": "Be brief.", "settings": {"max_cost": 0.5}}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["instructions"] == "Be brief."
    assert changed.json()["settings"]["max_cost"] == 0.5
    assert changed.json()["settings"]["max_iterations"] == 5  # settings merge
    assert changed.json()["version"] == "2"

    # What was fetched can be sent back as it is.
    fetched = (await client.get(f"/v2/agents/{shown['_id']}")).json()
    assert (await client.patch("/v2/agents/writer", json=fetched)).status_code == 200

    page = (await client.get("/v2/agents", params={"limit": "1.0"})).json()
    assert [entry["key"] for entry in page["data"]] == ["writer"]
    assert page["has_more"] is True
    rest = (await client.get("/v2/agents", params={"starting_after": "writer"})).json()
    assert [entry["key"] for entry in rest["data"]] == ["helper"]

    deleted = await client.delete("/v2/agents/writer")
    assert deleted.status_code == 204
    assert_error(await client.get("/v2/agents/writer"), 404, code="agent_not_found")


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (agent(key="9lives"), "invalid_agent_definition", "key"),
        (agent(model="primary"), "invalid_agent_definition", "model.id"),
        (agent(model="agent/other"), "invalid_agent_definition", "model.id"),
        (
            agent(knowledge_bases=[{"knowledge_id": "kb"}]),
            "unsupported_parameter",
            "knowledge_bases",
        ),
        (
            agent(settings={"tools": [{"type": "http", "key": "missing"}]}),
            "invalid_agent_definition",
            "settings.tools.0",
        ),
        (
            agent(settings={"tools": [{"type": "http"}]}),
            "invalid_agent_definition",
            "settings.tools.0",
        ),
        (
            agent(settings={"tools": [{"type": "telepathy"}]}),
            "invalid_agent_definition",
            "settings.tools.0",
        ),
        (
            agent(settings={"tool_approval_required": "sometimes"}),
            "invalid_agent_definition",
            "settings.tool_approval_required",
        ),
        (
            agent(model={"id": "chat/primary", "parameters": {"seed": 7}}),
            "invalid_agent_definition",
            "model.parameters.seed",
        ),
    ],
)
async def test_a_bad_agent_is_refused_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], code: str, param: str
) -> None:
    error = assert_error(await client.post("/v2/agents", json=body), 422, code=code)
    assert error["param"] == param
    assert (await client.get("/v2/agents")).json()["data"][0]["key"] == "helper"


async def test_an_agent_never_stores_a_secret_default(client: httpx.AsyncClient) -> None:
    body = agent(variables={"API_KEY": {"secret": True, "value": TOKEN}})
    answer = await client.post("/v2/agents", json=body)
    assert assert_error(answer, 422)["param"] == "variables"
    assert_no_piece(answer.text, TOKEN)


# Running an agent.


async def test_an_agent_run_takes_its_instructions_model_parameters_and_variables(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    body = agent(
        instructions="You write for {{team}} in {{tone}} tone.",
        variables={"team": "sales", "tone": "a dry"},
        model={"id": "chat/primary", "parameters": {"temperature": 0.3, "max_tokens": 99}},
    )
    assert (await client.post("/v2/agents", json=body)).status_code == 201
    fake.reply(Text("Done."))
    answer = await client.post(
        "/v1/responses",
        json={
            "model": "agent/writer",
            "input": "Write a slogan",
            "variables": {"tone": "a warm", "secret": {"secret": True, "value": TOKEN}},
        },
    )
    assert answer.status_code == 200, answer.text
    response = answer.json()
    assert response["output_text"] == "Done."
    assert response["model"] == "chat/primary"
    sent = fake.requests[-1].json
    assert sent["model"] == "primary"
    assert sent["temperature"] == 0.3
    assert sent["max_tokens"] == 99  # an OpenAI-compatible server knows this name
    system = sent["messages"][0]
    assert system["content"] == "You write for sales in a warm tone."
    assert response["instructions"] == "You write for sales in a warm tone."
    assert_no_piece(answer.text, TOKEN)
    assert_no_piece(json.dumps(fake.requests[-1].json), TOKEN)


async def test_the_request_adds_instructions_tools_and_its_own_parameters(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    body = agent(model={"id": "chat/primary", "parameters": {"temperature": 0.3}})
    assert (await client.post("/v2/agents", json=body)).status_code == 201
    fake.reply(Text("ok"))
    answer = await client.post(
        "/v1/responses",
        json={
            "model": "agent/writer",
            "input": "hi",
            "instructions": "Sign as Bot.",
            "temperature": 1.1,
            "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
        },
    )
    assert answer.status_code == 200, answer.text
    sent = fake.requests[-1].json
    assert sent["temperature"] == 1.1
    assert sent["messages"][0]["content"] == "Answer in one sentence.\n\nSign as Bot."
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["lookup"]


async def test_a_platform_tool_takes_its_configuration_over_the_model_arguments(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.reply(
        ToolCalls([Call("current_date", '{"timezone": "Asia/Tokyo"}')]), Text("It is today.")
    )
    answer = await client.post("/v1/responses", json={"model": "agent/helper", "input": "date?"})
    assert answer.status_code == 200, answer.text
    offered = fake.requests[0].json["tools"][0]["function"]
    assert offered["name"] == "current_date"
    assert "timezone" not in offered["parameters"].get("properties", {})
    call, message = answer.json()["output"]
    assert call["type"] == "orq:current_date"
    assert call["status"] == "completed"
    assert call["result"]["timezone"] == "Europe/Amsterdam"
    assert message["content"][0]["text"] == "It is today."
    assert fake.requests[0].json["messages"][0]["content"] == "You help support."


async def test_the_agent_limits_apply_and_the_request_overrides_them(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    loop = ToolCalls([Call("current_date", "{}")])
    fake.reply(loop, loop, loop)
    bounded = await client.post("/v1/responses", json={"model": "agent/helper", "input": "go"})
    assert bounded.json()["status"] == "incomplete"
    assert bounded.json()["incomplete_details"] == {"reason": "max_iterations"}
    assert len(fake.requests) == 3  # the manifest says max_iterations: 3
    fake.reset()
    fake.reply(loop)
    once = await client.post(
        "/v1/responses",
        json={"model": "agent/helper", "input": "go", "limits": {"max_iterations": 1}},
    )
    assert once.json()["incomplete_details"] == {"reason": "max_iterations"}
    assert len(fake.requests) == 1


async def test_an_agent_falls_back_to_its_fallback_models_with_their_parameters(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    body = agent(
        model={"id": "chat/primary", "parameters": {"temperature": 0.3}},
        fallback_models=[{"id": "alt/backup", "parameters": {"temperature": 0.9}}],
    )
    assert (await client.post("/v2/agents", json=body)).status_code == 201
    fake.reply(Status(500), Text("from the fallback"))
    answer = await client.post("/v1/responses", json={"model": "agent/writer", "input": "hi"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "alt/backup"
    first, second = fake.requests
    assert (first.json["model"], first.json["temperature"]) == ("primary", 0.3)
    assert (second.json["model"], second.json["temperature"]) == ("backup", 0.9)


async def test_an_unknown_agent_or_an_agent_without_its_provider_is_a_400(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    missing = await client.post("/v1/responses", json={"model": "agent/nobody", "input": "hi"})
    assert assert_error(missing, 400, code="agent_not_found")["param"] == "model"
    body = agent(model="elsewhere/model")
    assert (await client.post("/v2/agents", json=body)).status_code == 201
    unknown = await client.post("/v1/responses", json={"model": "agent/writer", "input": "hi"})
    error = assert_error(unknown, 400, code="unknown_provider")
    assert "agent 'writer'" in error["message"]
    assert fake.requests == []


async def test_a_registered_tool_deleted_after_the_agent_is_a_clear_error(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    assert (
        await client.post("/v2/tools", json=http_tool("lookup", upstream.url("/lookup")))
    ).status_code == 200
    body = agent(settings={"tools": [{"type": "http", "key": "lookup"}]})
    assert (await client.post("/v2/agents", json=body)).status_code == 201
    assert (await client.delete("/v2/tools/lookup")).status_code == 200
    answer = await client.post("/v1/responses", json={"model": "agent/writer", "input": "hi"})
    error = assert_error(answer, 404, code="tool_not_found")
    assert "lookup" in error["message"]


async def test_a_fallback_on_a_provider_this_service_lacks_is_left_out(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    body = agent(fallback_models=["elsewhere/model", "alt/backup"])
    assert (await client.post("/v2/agents", json=body)).status_code == 201
    fake.reply(Status(500), Text("from alt"))
    answer = await client.post("/v1/responses", json={"model": "agent/writer", "input": "hi"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "alt/backup"
    assert [request.json["model"] for request in fake.requests] == ["primary", "backup"]


async def test_the_agent_engine_renders_its_instructions(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    body = agent(
        engine="jinja",
        instructions="{% if vip %}Treat {{ name }} as a VIP.{% else %}Hello {{ name }}.{% endif %}",
        variables={"vip": False},
    )
    assert (await client.post("/v2/agents", json=body)).status_code == 201
    fake.reply(Text("ok"))
    answer = await client.post(
        "/v1/responses",
        json={"model": "agent/writer", "input": "hi", "variables": {"name": "Ada", "vip": True}},
    )
    assert answer.status_code == 200, answer.text
    assert sent_messages(fake)[0]["content"] == "Treat Ada as a VIP."


async def test_the_agent_model_retry_applies_to_its_calls(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    body = agent(model={"id": "chat/primary", "retry": {"count": 2, "on_codes": [503]}})
    assert (await client.post("/v2/agents", json=body)).status_code == 201
    fake.reply(Status(503), Status(503), Text("third time"))
    answer = await client.post("/v1/responses", json={"model": "agent/writer", "input": "hi"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["output_text"] == "third time"
    assert [request.json["model"] for request in fake.requests] == ["primary"] * 3
