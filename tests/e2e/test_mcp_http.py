"""The MCP face over Streamable HTTP: a real `sidecar serve`, real MCP clients of both eras."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.mcp_face import (
    UPSTREAM_TOKEN,
    http_client,
    initialize_request,
    prepare_workdir,
    result_json,
    result_text,
)
from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import RunningSidecar, run_sidecar
from tests.support.upstream import RecordingUpstream

pytestmark = pytest.mark.anyio

API_KEY = "mcp-face-api-key-31f2"
# 2025-era clients (initialize handshake, sessions) and the sessionless 2026 revision.
MODES = ["legacy", "auto"]


@pytest.fixture(scope="module")
def sidecar(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[RunningSidecar]:
    workdir = tmp_path_factory.mktemp("mcp-http")
    variables = prepare_workdir(workdir, upstream.base_url)
    env = {"SIDECAR_API_KEYS": API_KEY, "SIDECAR_MCP_VARIABLES_FILE": str(variables)}
    with run_sidecar(workdir, env) as running:
        yield running


def mcp_url(sidecar: RunningSidecar) -> str:
    return f"{sidecar.base_url}/mcp"


@pytest.mark.parametrize("mode", MODES)
async def test_both_eras_list_platform_and_registered_tools_but_no_function_tool(
    sidecar: RunningSidecar, mode: str
) -> None:
    async with http_client(mcp_url(sidecar), key=API_KEY, mode=mode) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert {"current_date", "echo_secret"} <= set(listed)
    assert "ask_the_user" not in listed, "a function tool cannot be run by an MCP client"
    assert all(tool.description for tool in listed.values())
    assert "timezone" in listed["current_date"].input_schema["properties"]
    echo = listed["echo_secret"]
    assert echo.title == "Echo with a token"
    assert echo.input_schema["required"] == ["word"]


@pytest.mark.parametrize("mode", MODES)
async def test_current_date_answers_json_text_and_structured_content(
    sidecar: RunningSidecar, mode: str
) -> None:
    async with http_client(mcp_url(sidecar), key=API_KEY, mode=mode) as client:
        result = await client.call_tool("current_date", {"timezone": "Asia/Tokyo"})
    answer = result_json(result)
    assert answer["timezone"] == "Asia/Tokyo"
    assert answer["currentDate"].endswith("Z")
    assert result.structured_content == answer


@pytest.mark.parametrize("mode", MODES)
async def test_a_secret_from_the_variables_file_reaches_the_upstream_and_nothing_else(
    sidecar: RunningSidecar, upstream: RecordingUpstream, mode: str
) -> None:
    async with http_client(mcp_url(sidecar), key=API_KEY, mode=mode) as client:
        result = await client.call_tool("echo_secret", {"word": f"from-{mode}"})
    received = upstream.requests[-1]
    assert received.path == f"/mcp-face/from-{mode}"
    assert received.headers["authorization"] == f"Bearer {UPSTREAM_TOKEN}"
    answer = result_json(result)
    assert answer["status_code"] == 200
    assert answer["body"]["headers"]["authorization"] == "Bearer ***"
    assert_no_secret(result.model_dump_json(), UPSTREAM_TOKEN, where="MCP result")
    assert_no_secret(sidecar.logs(), UPSTREAM_TOKEN, API_KEY, where="service logs")


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_registered_after_start_is_listed_and_callable_at_once(
    sidecar: RunningSidecar, upstream: RecordingUpstream, mode: str
) -> None:
    key = f"late_{mode}"
    tool = {
        "type": "http",
        "key": key,
        "description": "",
        "http": {"blueprint": {"url": upstream.base_url + "/late", "method": "GET"}},
    }
    api = httpx.Client(base_url=sidecar.base_url, headers={"Authorization": f"Bearer {API_KEY}"})
    async with http_client(mcp_url(sidecar), key=API_KEY, mode=mode) as client:
        before = {tool.name for tool in (await client.list_tools()).tools}
        with api:
            assert api.post("/v2/tools", json=tool).status_code == 200
        after = {tool.name: tool for tool in (await client.list_tools()).tools}
        result = await client.call_tool(key, {})
    assert key not in before
    assert after[key].description == f"{key} (http tool)", "an empty description gets a default"
    assert result_json(result)["status_code"] == 200


@pytest.mark.parametrize("mode", MODES)
async def test_bad_calls_are_error_results_and_the_service_keeps_serving(
    sidecar: RunningSidecar, mode: str
) -> None:
    async with http_client(mcp_url(sidecar), key=API_KEY, mode=mode) as client:
        unknown = await client.call_tool("no_such_tool", {})
        invalid = await client.call_tool("current_date", {"timezone": 42})
        missing = await client.call_tool("echo_secret", {})
        bad_zone = await client.call_tool("current_date", {"timezone": "Mars/Olympus"})
        good = await client.call_tool("current_date", {})
    assert unknown.is_error
    assert "no_such_tool" in result_text(unknown)
    assert result_text(unknown).startswith("tool_not_found: ")
    for failed in (invalid, missing, bad_zone):
        assert failed.is_error
        assert result_text(failed).startswith("invalid_arguments: ")
    assert not good.is_error
    assert httpx.get(f"{sidecar.base_url}/healthz").status_code == 200


def test_mcp_needs_the_bearer_key(sidecar: RunningSidecar) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        response = httpx.post(mcp_url(sidecar), json=initialize, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"
    assert_no_secret(sidecar.logs(), API_KEY, where="service logs")


@pytest.mark.parametrize(
    ("header", "value", "status"),
    [("host", "sidecar.attacker.example", 421), ("origin", "http://attacker.example", 403)],
)
def test_a_foreign_host_or_origin_is_refused(
    sidecar: RunningSidecar, header: str, value: str, status: int
) -> None:
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "Accept": "application/json, text/event-stream",
        header: value,
    }
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    response = httpx.post(mcp_url(sidecar), json=request, headers=headers)
    assert response.status_code == status, response.text


def test_the_loopback_host_with_the_service_port_is_accepted(sidecar: RunningSidecar) -> None:
    port = urlsplit(sidecar.base_url).port
    initialize = initialize_request("raw")
    response = httpx.post(
        mcp_url(sidecar),
        json=initialize,
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "Accept": "application/json, text/event-stream",
            "Host": f"localhost:{port}",
            "Origin": f"http://localhost:{port}",
        },
    )
    assert response.status_code == 200, response.text
    assert "orq-sidecar" in response.text
