"""Tool approval: a call that needs it pauses the run until the client approves or rejects it.

An agent's HTTP tool (which carries a secret to the reflecting upstream) requires
approval; the scripted provider's requests show what the model read of each call.
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
from tests.support.fake_providers import Call, FakeProvider, Text, ToolCalls, serve_fake_providers
from tests.support.response_streams import Streamed, read_events, stream_problems
from tests.support.secrets import assert_no_piece

pytestmark = pytest.mark.anyio

TOKEN = "approve-" + "Hq5Wn8Rt3Zk1Jv"
SECRETS = {"TOKEN": {"secret": True, "value": TOKEN}}


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with serve_fake_providers() as running:
        yield running


@pytest.fixture
async def client(
    tmp_path: Path, fake: FakeProvider, upstream: ReflectingUpstream
) -> AsyncIterator[httpx.AsyncClient]:
    providers = tmp_path / "providers.yaml"
    entry = {"name": "chat", "wire": "openai-chat", "base_url": fake.base_url}
    providers.write_text(json.dumps({"providers": [entry]}))
    settings = make_settings(tmp_path, providers_file=providers)
    async with open_client(settings) as running:
        tool = http_tool(
            "lookup",
            upstream.url("/approved/{{id}}"),
            headers={"Authorization": "Bearer {{TOKEN}}"},
            arguments={"id": {"type": "string", "description": "What to look up"}},
        )
        assert (await running.post("/v2/tools", json=tool)).status_code == 200
        yield running


async def make_agent(client: httpx.AsyncClient, policy: str = "respect_tool") -> None:
    body = {
        "key": "guarded",
        "role": "Clerk",
        "description": "Looks things up, with approval",
        "instructions": "Look things up.",
        "path": "Default",
        "model": "chat/m",
        "settings": {
            "tool_approval_required": policy,
            "tools": [
                {"type": "http", "key": "lookup", "requires_approval": True},
                {"type": "current_date"},
            ],
        },
    }
    created = await client.post("/v2/agents", json=body)
    assert created.status_code == 201, created.text


async def ask(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    answer = await client.post(
        "/v1/responses", json={"model": "agent/guarded", "variables": SECRETS, **fields}
    )
    assert answer.status_code == 200, answer.text
    assert_no_piece(answer.text, TOKEN)
    body: dict[str, Any] = answer.json()
    return body


def decision(approval_id: str, approve: bool, reason: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "mcp_approval_response",
        "approval_request_id": approval_id,
        "approve": approve,
    }
    if reason is not None:
        item["reason"] = reason
    return item


def tool_message(fake: FakeProvider, call_id: str) -> dict[str, Any]:
    """What the model read of a call on its latest turn."""
    for message in fake.requests[-1].json["messages"]:
        if message.get("role") == "tool" and message.get("tool_call_id") == call_id:
            content: dict[str, Any] = json.loads(message["content"])
            return content
    raise AssertionError(f"the model was not given the output of {call_id}")


async def paused(client: httpx.AsyncClient, fake: FakeProvider) -> dict[str, Any]:
    """A run whose model calls the guarded tool and the date in one turn."""
    fake.reply(
        ToolCalls([Call("lookup", '{"id": "42"}', id="call_look"), Call("current_date", "{}")])
    )
    response = await ask(client, input="Look up 42")
    assert response["status"] == "completed"  # as OpenAI answers an approval request
    return response


async def test_a_call_needing_approval_pauses_the_run_and_runs_once_approved(
    client: httpx.AsyncClient, fake: FakeProvider, upstream: ReflectingUpstream
) -> None:
    await make_agent(client)
    before = len(upstream.journal.to("/approved/42"))
    response = await paused(client, fake)
    request, date_item = response["output"]
    assert date_item["type"] == "orq:current_date"
    assert date_item["status"] == "completed"
    assert request["type"] == "mcp_approval_request"
    assert request["id"].startswith("mcpr_")
    assert (request["name"], json.loads(request["arguments"])) == ("lookup", {"id": "42"})
    assert len(upstream.journal.to("/approved/42")) == before  # nothing ran

    fake.reply(Text("Found it."))
    resumed = await ask(
        client, previous_response_id=response["id"], input=[decision(request["id"], True)]
    )
    assert resumed["output_text"] == "Found it."
    ran = resumed["output"][0]
    assert (ran["type"], ran["status"], ran["call_id"]) == ("orq:http", "completed", "call_look")
    seen = upstream.last("/approved/42")
    assert seen["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert "/approved/42" in json.dumps(tool_message(fake, "call_look"))
    assert_no_piece(json.dumps(fake.requests[-1].json), TOKEN)  # the model reads it redacted
    stored = await client.get(f"/v1/responses/{resumed['id']}")
    assert_no_piece(stored.text, TOKEN)


async def test_a_rejected_call_goes_back_to_the_model_as_a_refusal_it_can_read(
    client: httpx.AsyncClient, fake: FakeProvider, upstream: ReflectingUpstream
) -> None:
    await make_agent(client)
    before = len(upstream.journal.to("/approved/42"))
    response = await paused(client, fake)
    request = response["output"][0]
    fake.reply(Text("I will not look it up."))
    resumed = await ask(
        client,
        previous_response_id=response["id"],
        input=[
            decision(request["id"], False, "not today"),
            {"role": "user", "content": "Then say why you cannot."},
        ],
    )
    refused = resumed["output"][0]
    assert (refused["type"], refused["status"]) == ("orq:http", "failed")
    assert refused["error"]["code"] == "rejected"
    read = tool_message(fake, "call_look")
    assert read["error"] == {
        "code": "rejected",
        "message": "the user rejected this call: not today",
    }
    messages = fake.requests[-1].json["messages"]
    assert messages[-1] == {"role": "user", "content": "Then say why you cannot."}
    assert len(upstream.journal.to("/approved/42")) == before


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "waits for a decision on approval request"),
        ([decision("mcpr_unknown", True)], "is not waiting in the previous response"),
    ],
)
async def test_a_continuation_must_decide_every_pending_approval(
    client: httpx.AsyncClient, fake: FakeProvider, items: list[dict[str, Any]], message: str
) -> None:
    await make_agent(client)
    response = await paused(client, fake)
    pending = items if items else [{"role": "user", "content": "go on"}]
    answer = await client.post(
        "/v1/responses",
        json={"model": "agent/guarded", "previous_response_id": response["id"], "input": pending},
    )
    assert message in assert_error(answer, 400)["message"]


async def test_an_approval_without_a_previous_response_is_a_400(
    client: httpx.AsyncClient,
) -> None:
    await make_agent(client)
    answer = await client.post(
        "/v1/responses",
        json={"model": "agent/guarded", "input": [decision("mcpr_x", True)]},
    )
    assert "not waiting" in assert_error(answer, 400)["message"]


async def test_all_asks_for_every_tool_and_none_for_no_tool(
    client: httpx.AsyncClient, fake: FakeProvider, upstream: ReflectingUpstream
) -> None:
    await make_agent(client, "all")
    fake.reply(ToolCalls([Call("current_date", "{}")]))
    response = await ask(client, input="date?")
    assert [item["type"] for item in response["output"]] == ["mcp_approval_request"]

    changed = await client.patch(
        "/v2/agents/guarded", json={"settings": {"tool_approval_required": "none"}}
    )
    assert changed.status_code == 200, changed.text
    fake.reply(ToolCalls([Call("lookup", '{"id": "7"}')]), Text("done"))
    response = await ask(client, input="look up 7")
    assert [item["type"] for item in response["output"]] == ["orq:http", "message"]
    assert upstream.last("/approved/7")["path"] == "/approved/7"


async def test_a_request_tool_may_require_approval_too(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.reply(ToolCalls([Call("current_date", "{}")]))
    answer = await client.post(
        "/v1/responses",
        json={
            "model": "chat/m",
            "input": "date?",
            "tools": [{"type": "orq:current_date", "requires_approval": True}],
        },
    )
    assert [item["type"] for item in answer.json()["output"]] == ["mcp_approval_request"]


async def test_a_streamed_continuation_streams_the_approved_call_first(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    await make_agent(client)
    response = await paused(client, fake)
    request = response["output"][0]
    fake.reply(Text("Streamed."))
    answer = await client.post(
        "/v1/responses",
        json={
            "model": "agent/guarded",
            "variables": SECRETS,
            "stream": True,
            "previous_response_id": response["id"],
            "input": [decision(request["id"], True)],
        },
    )
    assert answer.status_code == 200, answer.text
    assert_no_piece(answer.text, TOKEN)
    streamed = Streamed(answer.status_code, answer.headers, answer.text)
    read_events(answer.text.split("\n"), streamed)
    assert stream_problems(streamed) == []
    kinds = [(name, data.get("item", {}).get("type")) for name, data in streamed.events]
    assert kinds[2:4] == [
        ("response.output_item.added", "orq:http"),
        ("response.output_item.done", "orq:http"),
    ]
    assert streamed.types[-1] == "response.completed"
    assert streamed.response["output_text"] == "Streamed."
