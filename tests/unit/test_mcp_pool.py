"""The MCP connection pool against real upstream servers: sharing, keys, eviction, cleanup."""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client
from pydantic import BaseModel

from sidecar.mcp_pool import McpPool, McpPoolSettings
from sidecar.outbound import OutboundPolicy
from tests.support.mcp_process import (
    RunningUpstream,
    running_upstream,
    stdio_command,
    wait_for_reported,
)
from tools.base import McpServer, McpUnavailable, OutboundBlocked

pytestmark = pytest.mark.anyio

SECRET = "pool-secret-credential-5521"
MARKER = "lean-path-marker"


@pytest.fixture
async def upstream() -> AsyncIterator[RunningUpstream]:
    async with running_upstream("http") as running:
        yield running


def http_server(upstream: RunningUpstream, token: str = SECRET) -> McpServer:
    return McpServer("http", url=upstream.url, headers=(("Authorization", f"Bearer {token}"),))


def stdio_server(name: str = "alpha", events: Path | None = None) -> McpServer:
    """The upstream over stdio; it reports its events to the file `events`, if given."""
    command, args = stdio_command()
    env = (("UPSTREAM_NAME", name),) + ((("UPSTREAM_EVENTS", str(events)),) if events else ())
    return McpServer("stdio", command=command, args=tuple(args), env=env)


async def whoami_pid(pool: McpPool, server: McpServer) -> int:
    answer = await pool.call_tool(server, "whoami", {}, time_limit=20)
    assert isinstance(answer.structured_content, dict)
    pid = answer.structured_content["pid"]
    assert isinstance(pid, int)
    return pid


async def test_calls_with_the_same_credentials_share_one_connection(
    upstream: RunningUpstream,
) -> None:
    policy = OutboundPolicy(["127.0.0.1"])
    async with McpPool.open(policy, McpPoolSettings()) as pool:

        async def add() -> None:
            await pool.call_tool(http_server(upstream), "add", {"a": 1, "b": 2}, time_limit=20)

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(add)
        assert pool.open_connections == 1
        await pool.call_tool(http_server(upstream, "other"), "add", {"a": 1, "b": 2}, time_limit=20)
        assert pool.open_connections == 2, "other credentials, another connection"


async def test_a_connection_key_holds_no_secret(upstream: RunningUpstream) -> None:
    async with McpPool.open(OutboundPolicy(["127.0.0.1"]), McpPoolSettings()) as pool:
        await pool.call_tool(http_server(upstream), "add", {"a": 1, "b": 2}, time_limit=20)
        keys = " ".join(pool.connection_keys)
    assert SECRET not in keys
    assert "Bearer" not in keys


async def test_an_idle_connection_is_closed_and_its_process_ends() -> None:
    settings = McpPoolSettings(idle_timeout=0.3)
    async with McpPool.open(OutboundPolicy(), settings) as pool:
        pid = await whoami_pid(pool, stdio_server())
        with anyio.fail_after(15):
            while pool.open_connections:
                await anyio.sleep(0.05)
        await wait_until_gone(pid)
        again = await whoami_pid(pool, stdio_server())
    assert again != pid, "the next call starts the server again"
    await wait_until_gone(again)


async def test_a_full_pool_closes_the_least_recently_used_idle_connection() -> None:
    async with McpPool.open(OutboundPolicy(), McpPoolSettings(max_connections=2)) as pool:
        first = await whoami_pid(pool, stdio_server("one"))
        await whoami_pid(pool, stdio_server("two"))
        await whoami_pid(pool, stdio_server("three"))
        assert pool.open_connections == 2
        await wait_until_gone(first)


async def test_a_pool_full_of_busy_connections_refuses_a_new_server_for_now() -> None:
    async with McpPool.open(OutboundPolicy(), McpPoolSettings(max_connections=1)) as pool:
        busy = stdio_server("busy")
        await whoami_pid(pool, busy)
        async with anyio.create_task_group() as group:

            async def long_call() -> None:
                await pool.call_tool(busy, "pause", {"seconds": 30}, time_limit=60)

            group.start_soon(long_call)
            await anyio.sleep(0.3)  # the pause call is in flight
            with pytest.raises(McpUnavailable) as caught:
                await whoami_pid(pool, stdio_server("other"))
            group.cancel_scope.cancel()
        assert caught.value.code == "mcp_pool_full"
        assert "in use" in caught.value.message
        assert await whoami_pid(pool, stdio_server("other"))  # room again once it ended


async def test_closing_the_pool_ends_every_stdio_server() -> None:
    async with McpPool.open(OutboundPolicy(), McpPoolSettings()) as pool:
        pids = [await whoami_pid(pool, stdio_server(name)) for name in ("a", "b", "c")]
    for pid in pids:
        await wait_until_gone(pid)


async def test_a_command_that_does_not_exist_is_unavailable() -> None:
    async with McpPool.open(OutboundPolicy(), McpPoolSettings()) as pool:
        with pytest.raises(McpUnavailable, match="could not be started"):
            await pool.call_tool(
                McpServer("stdio", command="/nonexistent/mcp"), "x", {}, time_limit=5
            )


async def test_the_outbound_guard_applies_to_upstream_urls() -> None:
    async with McpPool.open(OutboundPolicy(), McpPoolSettings()) as pool:
        server = McpServer("http", url="http://169.254.169.254/mcp")
        with pytest.raises(McpUnavailable) as caught:
            await pool.list_tools(server, time_limit=5)
    assert caught.value.code == OutboundBlocked.code
    assert "metadata" in caught.value.message


async def test_a_server_that_does_not_answer_in_time_is_unavailable() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener:  # accepts nothing: the connection is made, no answer comes
        settings = McpPoolSettings(connect_timeout=0.5)
        async with McpPool.open(OutboundPolicy(["127.0.0.1"]), settings) as pool:
            server = McpServer("http", url=f"http://127.0.0.1:{port}/mcp")
            with pytest.raises(McpUnavailable, match=r"no answer within 0\.5 s"):
                await pool.list_tools(server, time_limit=5)


async def wait_until_gone(pid: int) -> None:
    """Wait until process `pid` has ended (and been reaped)."""
    with anyio.fail_after(15):
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            await anyio.sleep(0.05)


async def test_a_stdio_server_killed_mid_call_fails_the_call_and_the_next_call_restarts_it(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.log"
    async with McpPool.open(OutboundPolicy(), McpPoolSettings()) as pool:
        server = stdio_server(events=events)
        pid = await whoami_pid(pool, server)
        failures: list[BaseException] = []

        async def slow_call() -> None:
            try:
                await pool.call_tool(server, "pause", {"seconds": 30}, time_limit=60)
            except McpUnavailable as exc:
                failures.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(slow_call)
            await wait_for_reported(events, "started")  # the call reached the server
            os.kill(pid, signal.SIGKILL)
        assert len(failures) == 1
        assert "lost during the call" in str(failures[0])
        again = await whoami_pid(pool, server)
    assert again != pid


async def test_a_sessionless_server_gets_plain_calls_as_one_post_with_the_same_answers(
    upstream: RunningUpstream,
) -> None:
    """Calls on the lean path answer what the `mcp.Client` answers: results, tool errors,
    the connection's own headers, and a timeout cancelled upstream."""
    async with McpPool.open(OutboundPolicy(("127.0.0.1",)), McpPoolSettings()) as pool:
        server = http_server(upstream, token=MARKER)  # not a secret: the pool does not redact
        await pool.list_tools(server, time_limit=20)
        added = await pool.call_tool(server, "add", {"a": 2, "b": 40}, time_limit=20)
        seen = await pool.call_tool(server, "whoami", {}, time_limit=20)
        refused = await pool.call_tool(server, "refuse", {"text": "no"}, time_limit=20)
        assert pool.sessionless_connections == 1
        with pytest.raises(TimeoutError):
            await pool.call_tool(server, "pause", {"seconds": 30}, time_limit=0.5)
        await upstream.wait_for("cancelled")
    async with Client(upstream.url) as reference:  # the package's own client
        expected = await reference.call_tool("add", {"a": 2, "b": 40})
        expected_refusal = await reference.call_tool("refuse", {"text": "no"})
    assert added.structured_content == expected.structured_content == {"result": 42}
    assert added.content == [shown(block) for block in expected.content]
    assert isinstance(seen.structured_content, dict)
    digest = hashlib.sha256(f"Bearer {MARKER}".encode()).hexdigest()
    assert seen.structured_content["authorization_sha256"] == digest  # the connection's header
    assert refused.is_error is expected_refusal.is_error is True
    assert refused.content == [shown(block) for block in expected_refusal.content]


def shown(block: BaseModel) -> object:
    return block.model_dump(mode="json", by_alias=True, exclude_none=True)


async def test_a_legacy_sse_server_keeps_every_call_on_the_client() -> None:
    async with (
        running_upstream("sse") as sse,
        McpPool.open(OutboundPolicy(("127.0.0.1",)), McpPoolSettings()) as pool,
    ):
        server = McpServer("sse", url=sse.url)
        answer = await pool.call_tool(server, "add", {"a": 1, "b": 2}, time_limit=20)
        assert answer.structured_content == {"result": 3}
        assert pool.sessionless_connections == 0
