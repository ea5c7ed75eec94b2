"""MCP tools through the API, against real upstream MCP servers (processes on loopback)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from ulid import ULID

from sidecar.mcp.catalog import Catalog, PlatformTools, RegisteredTools, expanders_for
from sidecar.mcp.server import build_mcp_server, mcp_face
from sidecar.registry.definitions import StoredTool
from sidecar.settings import Settings
from sidecar.variables import parse_variables
from tests.api.support import assert_error, make_settings, open_client, open_client_and_services
from tests.support.mcp_process import RunningUpstream, running_upstream, stdio_command
from tests.support.secrets import assert_no_secret

pytestmark = pytest.mark.anyio

SECRET = "mcp-s3cret-9f8e7d6c5b4a"
TRANSPORTS = ["http", "sse"]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def secret_variables(secret: str = SECRET) -> dict[str, Any]:
    return {"TOKEN": {"secret": True, "value": secret}, "TENANT": "acme"}


def server_tool(upstream: RunningUpstream, key: str = "remote") -> dict[str, Any]:
    return {
        "type": "mcp",
        "key": key,
        "description": "The test upstream",
        "mcp": {
            "server_url": upstream.url,
            "connection_type": upstream.transport,
            "headers": {"Authorization": "Bearer {{TOKEN}}", "X-Tenant": "{{TENANT}}"},
        },
    }


def inline_server(upstream: RunningUpstream, **extra: Any) -> dict[str, Any]:
    return {
        "type": "mcp",
        "server_url": upstream.url,
        "connection_type": upstream.transport,
        **extra,
    }


@pytest.fixture(params=TRANSPORTS)
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[RunningUpstream]:
    async with running_upstream(request.param) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, mcp_call_timeout=3)


async def register(client: httpx.AsyncClient, tool: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v2/tools", json={**tool, "variables": secret_variables()})
    assert response.status_code == 200, response.text
    assert_no_secret(response.text, SECRET)
    body: dict[str, Any] = response.json()
    return body


async def call(
    client: httpx.AsyncClient,
    tool_id: str,
    arguments: dict[str, Any],
    *,
    secret: str = SECRET,
    key: str = "remote",
    **extra: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/tools/execute",
        json={
            "tool": {"type": "mcp", "key": key, "tool_id": tool_id},
            "arguments": arguments,
            "variables": secret_variables(secret),
            **extra,
        },
    )
    assert response.status_code == 200, response.text
    assert_no_secret(response.text, secret)
    answer: dict[str, Any] = response.json()
    return answer


async def test_registering_a_server_lists_its_tools(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    stored = await register(client, server_tool(upstream))
    tools = {tool["name"]: tool for tool in stored["mcp"]["tools"]}
    assert set(tools) == {"whoami", "add", "pause", "refuse", "wipe", "blob"}
    assert tools["add"]["read_only"] is True
    assert tools["wipe"]["read_only"] is False
    assert tools["add"]["schema"]["required"] == ["a", "b"]
    assert all(ULID.from_str(tool["id"]) for tool in tools.values())


async def test_a_call_carries_the_secret_header_and_the_answer_does_not(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    await register(client, server_tool(upstream))
    answer = await call(client, "whoami", {})
    assert answer["status"] == "completed", answer
    seen = answer["result"]["structured_content"]
    assert seen["authorization_sha256"] == sha256(f"Bearer {SECRET}"), "the upstream saw it"
    assert seen["authorization"] == "Bearer ***"
    assert seen["tenant"] == "acme"
    assert answer["result"]["is_error"] is False
    assert answer["result"]["content"][0]["type"] == "text"


async def test_forty_concurrent_calls_with_different_secrets_do_not_mix(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    await register(client, server_tool(upstream))
    secrets = [f"tenant-secret-{n:02d}-{ULID()}" for n in range(40)]
    answers: dict[str, dict[str, Any]] = {}

    async def one(secret: str) -> None:
        answers[secret] = await call(client, "whoami", {}, secret=secret)

    async with anyio.create_task_group() as group:
        for secret in secrets:
            group.start_soon(one, secret)
    for secret, answer in answers.items():
        seen = answer["result"]["structured_content"]
        assert seen["authorization_sha256"] == sha256(f"Bearer {secret}")
        assert_no_secret(str(answer), *secrets)


async def test_an_upstream_restarted_between_calls_is_reconnected(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    await register(client, server_tool(upstream))
    first = await call(client, "whoami", {})
    await upstream.restart()
    again = await call(client, "whoami", {})
    assert again["status"] == "completed", again
    assert (
        again["result"]["structured_content"]["pid"] != first["result"]["structured_content"]["pid"]
    )


async def test_an_upstream_killed_mid_call_fails_that_call_and_the_next_reconnects(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    await register(client, server_tool(upstream))
    answers: list[dict[str, Any]] = []

    async def slow_call() -> None:
        answers.append(await call(client, "pause", {"seconds": 30}))

    async with anyio.create_task_group() as group:
        group.start_soon(slow_call)
        await upstream.wait_for("started")  # the call reached the upstream
        await upstream.kill()
    assert answers[0]["status"] == "failed"
    assert answers[0]["error"]["code"] == "mcp_unavailable"
    await upstream.start()
    after = await call(client, "add", {"a": 2, "b": 3})
    assert after["result"]["structured_content"] == {"result": 5}


async def test_a_slow_tool_hits_the_call_timeout_and_the_upstream_sees_the_cancel(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    await register(client, server_tool(upstream))
    answer = await call(client, "pause", {"seconds": 30})
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "upstream_timeout"
    assert "3 s" in answer["error"]["message"]
    await upstream.wait_for("cancelled")
    shorter = await call(client, "pause", {"seconds": 30}, timeout=0.5)
    assert shorter["error"]["code"] == "tool_timeout"
    await upstream.wait_for("cancelled")  # the call cancelled by its deadline is cancelled upstream
    ok = await call(client, "add", {"a": 1, "b": 1})
    assert ok["status"] == "completed", "the connection survives a timed-out call"


async def test_an_upstream_tool_error_comes_back_as_is_error(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    await register(client, server_tool(upstream))
    answer = await call(client, "refuse", {"text": f"no {SECRET}"})
    assert answer["status"] == "completed"
    assert answer["result"]["is_error"] is True
    assert "refused: no ***" in answer["result"]["content"][0]["text"]


async def test_arguments_are_checked_against_the_listed_schema(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    await register(client, server_tool(upstream))
    answer = await call(client, "add", {"a": "one"})
    assert answer["error"]["code"] == "invalid_arguments"


async def test_resolve_expands_a_server_with_the_allowed_tools_filter(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    stored = await register(client, server_tool(upstream))
    response = await client.post(
        "/v1/tools/resolve",
        json={"tools": [{"type": "mcp", "key": "remote", "allowed_tools": {"read_only": True}}]},
    )
    assert response.status_code == 200, response.text
    tools = response.json()["tools"]
    assert [tool["name"] for tool in tools] == ["add"]
    add_id = next(t["id"] for t in stored["mcp"]["tools"] if t["name"] == "add")
    assert tools[0]["tool"]["tool_id"] == add_id
    named = await client.post(
        "/v1/tools/resolve",
        json={
            "tools": [
                {"type": "mcp", "key": "remote", "allowed_tools": {"tool_names": ["wipe", "add"]}}
            ]
        },
    )
    assert sorted(tool["name"] for tool in named.json()["tools"]) == ["add", "wipe"]


async def test_a_tool_outside_allowed_tools_is_not_executed(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    await register(client, server_tool(upstream))
    response = await client.post(
        "/v1/tools/execute",
        json={
            "tool": {
                "type": "mcp",
                "key": "remote",
                "tool_id": "wipe",
                "allowed_tools": {"read_only": True},
            },
            "arguments": {},
            "variables": secret_variables(),
        },
    )
    assert_error(response, 404, code="tool_not_found")


async def test_orq_mcp_takes_the_nested_tool_id(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    stored = await register(client, server_tool(upstream))
    add_id = next(t["id"] for t in stored["mcp"]["tools"] if t["name"] == "add")
    response = await client.post(
        "/v1/tools/execute",
        json={
            "tool": {"type": "orq:mcp", "tool_id": add_id},
            "arguments": {"a": 4, "b": 5},
            "variables": secret_variables(),
        },
    )
    assert response.json()["result"]["structured_content"] == {"result": 9}


async def test_refresh_keeps_the_ids_of_tools_that_are_still_there(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    stored = await register(client, server_tool(upstream))
    response = await client.post(
        f"/v2/tools/{stored['_id']}/refresh", json={"variables": secret_variables()}
    )
    assert response.status_code == 200, response.text
    assert_no_secret(response.text, SECRET)
    refreshed = response.json()
    assert refreshed["version"] == stored["version"] + 1
    assert refreshed["mcp"]["tools"] == stored["mcp"]["tools"]


async def test_an_inline_server_is_listed_and_called_by_tool_name(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    inline = inline_server(upstream, headers={"Authorization": "Bearer {{TOKEN}}"})
    listed = await client.post(
        "/v1/tools/resolve", json={"tools": [inline], "variables": secret_variables()}
    )
    assert listed.status_code == 200, listed.text
    entries = {tool["name"]: tool for tool in listed.json()["tools"]}
    assert entries["add"]["tool"]["tool_name"] == "add"
    response = await client.post(
        "/v1/tools/execute",
        json={"tool": entries["whoami"]["tool"], "arguments": {}, "variables": secret_variables()},
    )
    assert_no_secret(response.text, SECRET)
    seen = response.json()["result"]["structured_content"]
    assert seen["authorization_sha256"] == sha256(f"Bearer {SECRET}")


async def test_an_encrypted_header_is_stored_encrypted_and_shown_masked(
    client: httpx.AsyncClient, upstream: RunningUpstream, settings: Settings
) -> None:
    tool = server_tool(upstream)
    tool["mcp"]["headers"] = {"Authorization": {"value": f"Bearer {SECRET}", "encrypted": True}}
    stored = await register(client, tool)
    assert stored["mcp"]["headers"]["Authorization"] == {"value": "***", "encrypted": True}
    assert SECRET.encode() not in settings.database_path.read_bytes()
    answer = await call(client, "whoami", {})
    seen = answer["result"]["structured_content"]
    assert seen["authorization_sha256"] == sha256(f"Bearer {SECRET}")
    assert seen["authorization"] == "***", "the whole stored value is a secret"


async def test_a_server_behind_the_outbound_guard_is_refused(client: httpx.AsyncClient) -> None:
    tool = {"type": "mcp", "key": "private", "mcp": {"server_url": "http://10.1.2.3:9/mcp"}}
    response = await client.post("/v2/tools", json=tool)
    error = assert_error(response, 502, code="outbound_blocked")
    assert "10.1.2.3" in error["message"]


async def test_an_unreachable_server_cannot_be_registered(client: httpx.AsyncClient) -> None:
    tool = {"type": "mcp", "key": "down", "mcp": {"server_url": "http://127.0.0.1:9/mcp"}}
    error = assert_error(await client.post("/v2/tools", json=tool), 502, code="mcp_unavailable")
    assert "127.0.0.1:9" in error["message"]
    listing = await client.get("/v2/tools")
    assert listing.json()["data"] == []


async def test_a_stdio_server_cannot_be_registered_through_the_api(
    client: httpx.AsyncClient,
) -> None:
    command, args = stdio_command()
    tool = {
        "type": "mcp",
        "key": "local",
        "mcp": {"connection_type": "stdio", "command": command, "args": args},
    }
    assert_error(await client.post("/v2/tools", json=tool), 400)


async def test_a_manifest_stdio_server_is_discovered_on_first_use(tmp_path: Path) -> None:
    command, args = stdio_command()
    manifests = tmp_path / "manifests" / "tools"
    manifests.mkdir(parents=True)
    quoted_args = ", ".join(f'"{arg}"' for arg in args)
    (manifests / "local.yaml").write_text(
        "type: mcp\nkey: local\ndescription: A local MCP server\nmcp:\n"
        f"  connection_type: stdio\n  command: {command}\n  args: [{quoted_args}]\n"
        "  env:\n    UPSTREAM_NAME: '{{NAME}}'\n"
    )
    async with open_client(make_settings(tmp_path)) as client:
        response = await client.post(
            "/v1/tools/execute",
            json={
                "tool": {"type": "mcp", "key": "local", "tool_id": "whoami"},
                "arguments": {},
                "variables": {"NAME": {"secret": True, "value": SECRET}},
            },
        )
        assert_no_secret(response.text, SECRET)
        assert response.json()["result"]["structured_content"]["name"] == "***"
        listed = await client.get("/v2/tools/local")
        assert {tool["name"] for tool in listed.json()["mcp"]["tools"]} >= {"whoami", "add"}


async def test_the_mcp_face_offers_a_registered_servers_tools_under_their_key(
    settings: Settings, upstream: RunningUpstream
) -> None:
    async with open_client_and_services(settings) as (client, services):
        await register(client, server_tool(upstream))
        registry = services.registry
        catalog = Catalog(
            [PlatformTools(registry.builtins), RegisteredTools(registry, expanders_for(registry))]
        )
        variables = parse_variables(secret_variables())
        face = build_mcp_server(executor=services.executor, catalog=catalog, variables=variables)
        async with Client(face) as mcp_client:
            listed = {tool.name: tool for tool in (await mcp_client.list_tools()).tools}
            result = await mcp_client.call_tool("remote__whoami", {})
        assert {"remote__add", "remote__whoami", "current_date"} <= set(listed)
        assert listed["remote__add"].input_schema["required"] == ["a", "b"]
        seen = result.structured_content
        assert seen is not None, "the upstream's structured content is handed on"
        assert seen["authorization"] == "Bearer ***"
        assert seen["authorization_sha256"] == sha256(f"Bearer {SECRET}")
        assert_no_secret(result.model_dump_json(), SECRET)
        async with Client(face) as mcp_client:
            refused = await mcp_client.call_tool("remote__refuse", {"text": "no"})
        assert refused.is_error
        assert "refused: no" in refused.model_dump_json()


async def test_an_inline_read_only_filter_refuses_a_tool_the_server_does_not_mark_read_only(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    inline = inline_server(upstream, allowed_tools={"read_only": True})

    async def run(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        response = await client.post(
            "/v1/tools/execute",
            json={"tool": {**inline, "tool_name": name}, "arguments": arguments},
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    refused = await run("wipe", {})
    assert refused["error"]["code"] == "tool_not_allowed"
    allowed = await run("add", {"a": 20, "b": 22})
    assert allowed["result"]["structured_content"] == {"result": 42}


async def test_a_placeholder_in_the_server_url_is_filled_at_call_time(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    tool = server_tool(upstream)
    tool["mcp"]["server_url"] = upstream.url + "?tenant={{TENANT}}&key={{TOKEN}}"
    stored = await register(client, tool)
    assert stored["mcp"]["server_url"].endswith("?tenant={{TENANT}}&key={{TOKEN}}")
    answer = await call(client, "add", {"a": 1, "b": 2})
    assert answer["result"]["structured_content"] == {"result": 3}
    missing = await client.post(
        "/v1/tools/execute",
        json={
            "tool": {"type": "mcp", "key": "remote", "tool_id": "add"},
            "arguments": {"a": 1, "b": 2},
        },
    )
    assert missing.json()["error"]["code"] == "invalid_arguments", "no value for the placeholders"


async def test_an_answer_over_the_size_cap_is_cut_and_says_so(
    tmp_path: Path, upstream: RunningUpstream
) -> None:
    settings = make_settings(tmp_path, http_max_response_bytes=4096)
    async with open_client(settings) as client:
        await register(client, server_tool(upstream))
        answer = await call(client, "blob", {"size": 100_000})
    result = answer["result"]
    assert result["truncated"] is True
    assert "structured_content" not in result
    assert 3000 < len(result["content"][0]["text"]) < 4096


async def test_the_face_finds_a_servers_tool_by_its_key_without_listing_every_tool(
    settings: Settings, upstream: RunningUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_client_and_services(settings) as (client, services):
        await register(client, server_tool(upstream))
        catalog = Catalog.of_registry(services.registry)
        listings: list[int] = []
        every_tool = services.registry.all

        async def counted() -> list[StoredTool]:
            listings.append(1)
            return await every_tool()

        monkeypatch.setattr(services.registry, "all", counted)
        found = await catalog.find("remote__add")
        missing = [await catalog.find(name) for name in ("remote__nope", "nokey__add", "remote")]
    assert found is not None
    assert found.input_schema["required"] == ["a", "b"]
    assert missing == [None, None, None]  # "remote" is the server, not one of its tools
    assert_no_secret(repr(found), SECRET)
    assert listings == []


async def test_the_mcp_face_discovers_a_manifest_server_on_its_first_listing(
    tmp_path: Path, upstream: RunningUpstream
) -> None:
    manifests = tmp_path / "manifests" / "tools"
    manifests.mkdir(parents=True)
    (manifests / "calc.yaml").write_text(
        "type: mcp\nkey: calc\ndescription: A calculator\nmcp:\n"
        f"  connection_type: {upstream.transport}\n  server_url: '{upstream.url}'\n"
        "  headers:\n    Authorization: 'Bearer {{TOKEN}}'\n"
    )
    # A server that cannot be reached is logged and left out; the others are listed.
    (manifests / "down.yaml").write_text(
        "type: mcp\nkey: down\ndescription: Not there\nmcp:\n"
        "  connection_type: http\n  server_url: 'http://127.0.0.1:9/mcp'\n"
    )
    variables = parse_variables(secret_variables())
    async with open_client_and_services(make_settings(tmp_path)) as (_, services):
        face = mcp_face(services, variables)
        async with Client(face) as mcp_client:
            listed = {tool.name for tool in (await mcp_client.list_tools()).tools}
            result = await mcp_client.call_tool("calc__add", {"a": 2, "b": 40})
    assert {"calc__add", "calc__whoami"} <= listed
    assert not any(name.startswith("down__") for name in listed)
    assert result.structured_content == {"result": 42}


async def test_discovery_variables_fill_the_server_once_as_orq_names_them(
    client: httpx.AsyncClient, upstream: RunningUpstream
) -> None:
    discovery = {"TOKEN": SECRET, "TENANT": "acme"}
    response = await client.post(
        "/v2/tools", json={**server_tool(upstream), "discovery_variables": discovery}
    )
    assert response.status_code == 200, response.text
    assert {tool["name"] for tool in response.json()["mcp"]["tools"]} >= {"add", "whoami"}
    assert_no_secret(response.text, SECRET)
    refreshed = await client.post(
        "/v2/tools/remote/refresh", json={"discovery_variables": discovery}
    )
    assert refreshed.status_code == 200, refreshed.text
    without = await client.post("/v2/tools/remote/refresh", json={})
    assert without.status_code >= 400, "nothing of the first values was kept"
    assert "TOKEN" in without.text
    bad = await client.post("/v2/tools/remote/refresh", json={"discovery_variables": {"T": 1}})
    assert_error(bad, 400)
