"""The MCP tool `respond`, driven by the `mcp` Python client over stdio and Streamable HTTP.

A real `sidecar mcp` (stdio) or `sidecar serve` (`/mcp`), scripted fake providers on
loopback for the model, the recording upstream for the agent's HTTP tools (one sends
a secret from the MCP variables file, one answers slowly and notes when its client
leaves).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeAlias

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import CallToolResult, ElicitRequestParams, ElicitResult, TextContent

from tests.support.fake_providers import Call, FakeProvider, Slow, Text, ToolCalls
from tests.support.mcp_face import (
    UPSTREAM_TOKEN,
    http_client,
    prepare_respond_workdir,
    result_text,
)
from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import RunningSidecar, run_sidecar
from tests.support.upstream import RecordingUpstream

pytestmark = pytest.mark.anyio

API_KEY = "respond-api-key-6c1d"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream, fake: FakeProvider
) -> Iterator[RunningSidecar]:
    root = tmp_path_factory.mktemp("respond-http")
    env = {**prepare_respond_workdir(root, upstream, fake), "SIDECAR_API_KEYS": API_KEY}
    with run_sidecar(root, env) as running:
        yield running


@pytest.fixture
def stdio_env(tmp_path: Path, upstream: RecordingUpstream, fake: FakeProvider) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), **prepare_respond_workdir(tmp_path, upstream, fake)}


@pytest.fixture(autouse=True)
def fresh_script(fake: FakeProvider) -> None:
    fake.reset()


@asynccontextmanager
async def stdio_session(env: dict[str, str], cwd: Path, **options: Any) -> AsyncIterator[Client]:
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", "sidecar", "mcp"], env=env, cwd=cwd
    )
    with (cwd / "sidecar-mcp.log").open("a", encoding="utf-8") as log:
        async with Client(stdio_client(parameters, errlog=log), **options) as client:
            yield client


Connect: TypeAlias = Callable[..., AbstractAsyncContextManager[Client]]


@pytest.fixture
def connect(served: RunningSidecar, stdio_env: dict[str, str], tmp_path: Path) -> Connect:
    """`connect(transport, **client options)`: a client of the stdio face, or of `/mcp` in
    either protocol era (`legacy`, `auto`)."""

    @asynccontextmanager
    async def opened(transport: str, **options: Any) -> AsyncIterator[Client]:
        if transport == "stdio":
            async with stdio_session(stdio_env, tmp_path, **options) as client:
                yield client
        else:
            url = f"{served.base_url}/mcp"
            async with http_client(url, key=API_KEY, mode=transport, **options) as client:
                yield client

    return opened


TRANSPORTS = ["stdio", "legacy", "auto"]


def structured(result: CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None, result
    found: dict[str, Any] = result.structured_content
    return found


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_respond_is_listed_with_the_agents_and_agents_are_prompts(
    transport: str, connect: Connect
) -> None:
    async with connect(transport) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        prompts = (await client.list_prompts()).prompts
        prompt = await client.get_prompt("agent/clerk", {"input": "find order 7"})
    respond = tools["respond"]
    assert respond.description
    assert respond.input_schema["properties"]["agent"]["enum"] == ["clerk"]
    assert "chat/m" in respond.input_schema["properties"]["model"]["description"]
    assert [(p.name, p.description) for p in prompts] == [
        ("agent/clerk", "Looks things up for you")
    ]
    content = prompt.messages[0].content
    assert isinstance(content, TextContent)
    assert "respond" in content.text
    assert "'clerk'" in content.text
    assert "find order 7" in content.text


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_respond_answers_text_and_the_response_and_a_follow_up_continues_it(
    transport: str,
    connect: Connect,
    fake: FakeProvider,
) -> None:
    fake.reply(Text("Hello there."), Text("Still here."))
    async with connect(transport) as client:
        first = await client.call_tool("respond", {"input": "hi"})
        response = structured(first)
        second = await client.call_tool(
            "respond",
            {
                "input": "again",
                "previous_response_id": response["id"],
                "instructions": "Say {{greeting}}.",
                "variables": {"greeting": "hi there"},  # over the file's "hello"
            },
        )
    assert not first.is_error
    assert result_text(first) == "Hello there."
    assert response["id"].startswith("resp_")
    assert response["status"] == "completed"
    assert response["usage"]["total_tokens"] > 0
    assert result_text(second) == "Still here."
    sent = fake.requests[-1].json["messages"]
    assert [message["content"] for message in sent] == [
        "Say hi there.",
        "hi",
        "Hello there.",
        "again",
    ]


@pytest.mark.parametrize("transport", ["stdio", "legacy"])
async def test_progress_notifications_tell_of_each_model_turn_and_tool_call(
    transport: str,
    connect: Connect,
    fake: FakeProvider,
) -> None:
    fake.reply(ToolCalls([Call("current_date", "{}")]), Text("It is today."))
    heard: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        heard.append((progress, message))

    async with connect(transport) as client:
        result = await client.call_tool(
            "respond", {"agent": "clerk", "input": "date?"}, progress_callback=on_progress
        )
    assert result_text(result) == "It is today."
    assert [message for _, message in heard] == [
        "model turn 1 (chat/m)",
        "tool current_date running",
        "tool current_date completed",
        "model turn 2 (chat/m)",
    ]
    assert [progress for progress, _ in heard] == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("approve", [True, False])
async def test_a_call_needing_approval_asks_the_user_through_elicitation(
    transport: str,
    approve: bool,
    connect: Connect,
    fake: FakeProvider,
    upstream: RecordingUpstream,
) -> None:
    asked: list[str] = []

    async def on_elicit(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        content: dict[str, Any] = {"approve": approve}
        if not approve:
            content["reason"] = "not that word"
        return ElicitResult(action="accept", content=content)

    fake.reply(ToolCalls([Call("echo_secret", '{"word": "asked"}', id="call_echo")]), Text("ok"))
    before = len(upstream.requests)
    async with connect(transport, elicitation_callback=on_elicit) as client:
        result = await client.call_tool("respond", {"agent": "clerk", "input": "echo it"})
    assert len(asked) == 1
    assert "echo_secret" in asked[0]
    assert '"word": "asked"' in asked[0]
    item = structured(result)["output"][0]
    assert item["type"] == "orq:http"
    read = next(
        json.loads(message["content"])
        for message in fake.requests[-1].json["messages"]
        if message.get("tool_call_id") == "call_echo"
    )
    if approve:
        assert item["status"] == "completed"
        assert upstream.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_TOKEN}"
        assert len(upstream.requests) == before + 1
    else:
        assert item["status"] == "failed"
        assert read["error"]["code"] == "rejected"
        assert "not that word" in read["error"]["message"]
        assert len(upstream.requests) == before
    assert_no_secret(result.model_dump_json(), UPSTREAM_TOKEN, where="respond result")
    assert_no_secret(json.dumps(fake.requests[-1].json), UPSTREAM_TOKEN, where="model input")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_without_elicitation_the_run_pauses_and_approvals_continue_it(
    transport: str,
    connect: Connect,
    fake: FakeProvider,
    upstream: RecordingUpstream,
) -> None:
    fake.reply(ToolCalls([Call("echo_secret", '{"word": "later"}')]), Text("Echoed."))
    async with connect(transport) as client:
        paused = await client.call_tool("respond", {"agent": "clerk", "input": "echo later"})
        response = structured(paused)
        (request,) = response["output"]
        assert request["type"] == "mcp_approval_request"
        assert "Waiting for approval of: echo_secret" in result_text(paused)
        assert request["id"] in result_text(paused)
        resumed = await client.call_tool(
            "respond",
            {
                "agent": "clerk",
                "previous_response_id": response["id"],
                "approvals": [{"approval_request_id": request["id"], "approve": True}],
            },
        )
    assert result_text(resumed) == "Echoed."
    assert structured(resumed)["output"][0]["status"] == "completed"
    assert upstream.requests[-1].path == "/mcp-face/later"
    assert_no_secret(resumed.model_dump_json(), UPSTREAM_TOKEN, where="respond result")


async def call_then_cancel(client: Client, arguments: dict[str, Any], started: Any) -> None:
    """Call `respond` in a task and cancel it (the client sends notifications/cancelled)
    once `started()` holds."""
    async with anyio.create_task_group() as group:

        async def call() -> None:
            await client.call_tool("respond", arguments)

        group.start_soon(call)
        with anyio.fail_after(10):
            while not started():
                await anyio.sleep(0.02)
        group.cancel_scope.cancel()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_cancel_stops_a_slow_provider(
    transport: str,
    connect: Connect,
    fake: FakeProvider,
) -> None:
    fake.reply(Slow(Text("too late"), seconds=30))
    async with connect(transport) as client:
        await call_then_cancel(client, {"input": "take your time"}, lambda: fake.holding == 1)
        await fake.until(lambda: fake.holding == 0, timeout=10)
        fake.reply(Text("next"))
        after = await client.call_tool("respond", {"input": "still there?"})
    assert result_text(after) == "next"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_cancel_stops_a_slow_tool(
    transport: str,
    connect: Connect,
    fake: FakeProvider,
    upstream: RecordingUpstream,
) -> None:
    upstream.slow_events.clear()
    fake.reply(ToolCalls([Call("slow_lookup", "{}")]))
    async with connect(transport) as client:
        await call_then_cancel(
            client, {"agent": "clerk", "input": "look slowly"}, lambda: upstream.slow_events
        )
        with anyio.fail_after(10):
            while "left" not in upstream.slow_events:
                await anyio.sleep(0.02)
    assert upstream.slow_events == ["started", "left"]


async def test_without_a_default_respond_names_the_settings(
    stdio_env: dict[str, str], tmp_path: Path, fake: FakeProvider
) -> None:
    env = {name: value for name, value in stdio_env.items() if name != "SIDECAR_RESPOND_MODEL"}
    async with stdio_session(env, tmp_path) as client:
        result = await client.call_tool("respond", {"input": "hi"})
        unknown = await client.call_tool("respond", {"input": "hi", "agent": "nobody"})
        both = await client.call_tool(
            "respond", {"input": "hi", "agent": "clerk", "model": "chat/m"}
        )
    assert result.is_error
    assert "SIDECAR_RESPOND_MODEL" in result_text(result)
    assert "SIDECAR_RESPOND_AGENT" in result_text(result)
    assert unknown.is_error
    assert "agent_not_found" in result_text(unknown)
    assert both.is_error
    assert "either 'model' or 'agent'" in result_text(both)
    assert fake.requests == []
