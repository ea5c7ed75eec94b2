"""A model answer that calls an MCP server's tool: the `mcp_call` item, with its secret headers.

A real MCP upstream process (Streamable HTTP), scripted fake providers on loopback, and
the app behind an in-process client.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.settings import Settings
from tests.api.support import make_settings, open_client
from tests.support.fake_providers import Call, FakeProvider, Text, ToolCalls, serve_fake_providers
from tests.support.mcp_process import RunningUpstream, running_upstream
from tests.support.secrets import assert_no_piece

pytestmark = pytest.mark.anyio

TOKEN = "mcp-" + "Rq8Tz3Lw6Yp1Nb"


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with serve_fake_providers() as running:
        yield running


@pytest.fixture
async def upstream() -> AsyncIterator[RunningUpstream]:
    async with running_upstream("http") as running:
        yield running


VARIABLES = {"TOKEN": {"secret": True, "value": TOKEN}}


def chat_settings(tmp_path: Path, fake: FakeProvider) -> Settings:
    """Settings with the fake's Chat Completions wire as provider `chat`."""
    providers = tmp_path / "providers.yaml"
    entry = {"name": "chat", "wire": "openai-chat", "base_url": fake.base_url}
    providers.write_text(json.dumps({"providers": [entry]}))
    return make_settings(tmp_path, providers_file=providers)


def calc_server(upstream: RunningUpstream) -> dict[str, Any]:
    """The upstream as a registered MCP server `calc`, reached with the secret TOKEN."""
    return {
        "type": "mcp",
        "key": "calc",
        "description": "The test upstream",
        "mcp": {
            "server_url": upstream.url,
            "connection_type": "http",
            "headers": {"Authorization": "Bearer {{TOKEN}}"},
        },
    }


async def test_an_mcp_tool_runs_server_side_as_an_mcp_call_item(
    tmp_path: Path, fake: FakeProvider, upstream: RunningUpstream
) -> None:
    settings = chat_settings(tmp_path, fake)
    server = calc_server(upstream)
    fake.reply(ToolCalls([Call("add", '{"a": 2, "b": 3}')]), Text("The sum is 5"))
    async with open_client(settings) as client:
        created = await client.post("/v2/tools", json={**server, "variables": VARIABLES})
        assert created.status_code == 200, created.text
        answer = await client.post(
            "/v1/responses",
            json={
                "model": "chat/m",
                "input": "What is 2 + 3?",
                "tools": [{"type": "mcp", "key": "calc"}],
                "variables": VARIABLES,
            },
        )
    response = answer.json()
    assert answer.status_code == 200, answer.text
    call, message = response["output"]
    assert call["type"] == "mcp_call"
    assert (call["server_label"], call["name"], call["error"]) == ("calc", "add", None)
    assert json.loads(call["output"])["structured_content"] == {"result": 5}
    assert message["content"][0]["text"] == "The sum is 5"
    offered = fake.requests[0].json["tools"]
    assert "add" in [tool["function"]["name"] for tool in offered]
    assert_no_piece(answer.text, TOKEN)


async def test_an_agent_offers_one_tool_of_an_mcp_server_by_tool_id(
    tmp_path: Path, fake: FakeProvider, upstream: RunningUpstream
) -> None:
    settings = chat_settings(tmp_path, fake)
    server = calc_server(upstream)
    agent = {
        "key": "adder",
        "role": "Adder",
        "description": "Adds",
        "instructions": "Add.",
        "path": "Default",
        "model": "chat/m",
        "settings": {"tools": [{"type": "mcp", "key": "calc", "tool_id": "add"}]},
    }
    fake.reply(ToolCalls([Call("add", '{"a": 4, "b": 5}')]), Text("9"))
    async with open_client(settings) as client:
        created = await client.post("/v2/tools", json={**server, "variables": VARIABLES})
        assert created.status_code == 200, created.text
        missing = await client.post(
            "/v2/agents",
            json={
                **agent,
                "settings": {"tools": [{"type": "mcp", "key": "calc", "tool_id": "nope"}]},
            },
        )
        assert missing.status_code == 422
        assert missing.json()["error"]["param"] == "settings.tools.0.tool_id"
        registered = await client.post("/v2/agents", json=agent)
        assert registered.status_code == 201, registered.text
        answer = await client.post(
            "/v1/responses",
            json={"model": "agent/adder", "input": "4 + 5?", "variables": VARIABLES},
        )
    assert answer.status_code == 200, answer.text
    offered = [tool["function"]["name"] for tool in fake.requests[0].json["tools"]]
    assert offered == ["add"]
    call = answer.json()["output"][0]
    assert (call["type"], call["server_label"], call["error"]) == ("mcp_call", "calc", None)
    assert json.loads(call["output"])["structured_content"] == {"result": 9}
    assert_no_piece(answer.text, TOKEN)
    assert_no_piece(registered.text, TOKEN)
