"""Python code tools through the API, run in the real sandbox (zygote and confined children)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.support import assert_error, make_settings, open_client
from tests.api.upstream import Upstream
from tests.support.secrets import assert_no_secret

pytestmark = pytest.mark.anyio

SECRET = "code-tool-secret-8842"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(make_settings(tmp_path, sandbox_enabled=True)) as client:
        yield client


def code_tool(key: str, code: str, **code_tool: Any) -> dict[str, Any]:
    parameters = code_tool.pop(
        "parameters", {"type": "object", "properties": {"n": {"type": "integer"}}}
    )
    return {
        "type": "code",
        "key": key,
        "description": f"The {key} tool",
        "code_tool": {"language": "python", "code": code, "parameters": parameters, **code_tool},
    }


async def execute(client: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    variables = {"TOKEN": {"secret": True, "value": SECRET}, "region": "eu"}
    response = await client.post(
        "/v1/tools/execute",
        json={"tool": {"type": "code", "key": key}, "variables": variables, **body},
    )
    assert response.status_code == 200, response.text
    assert_no_secret(response.text, SECRET)
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_code_tool_gets_arguments_variables_and_params(client: httpx.AsyncClient) -> None:
    code = (
        "total = sum(range(n + 1))\n"
        "print('summing', n, 'in', region)\n"
        "result = {'total': total, 'params': params, 'token_length': len(TOKEN)}\n"
    )
    assert (await client.post("/v2/tools", json=code_tool("summer", code))).status_code == 200
    answer = await execute(client, "summer", arguments={"n": 10})
    assert answer["status"] == "completed", answer
    assert answer["result"] == {
        "result": {"total": 55, "params": {"n": 10}, "token_length": len(SECRET)},
        "stdout": "summing 10 in eu\n",
    }


async def test_a_secret_the_code_prints_or_returns_is_masked(client: httpx.AsyncClient) -> None:
    code = "print('token is', TOKEN)\nresult = {'echo': TOKEN}\n"
    await client.post("/v2/tools", json=code_tool("leaky", code))
    answer = await execute(client, "leaky", arguments={})
    assert answer["result"] == {"result": {"echo": "***"}, "stdout": "token is ***\n"}


async def test_code_that_does_not_compile_is_refused_at_registration(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v2/tools", json=code_tool("broken", "x = 1\ny = (\n"))
    error = assert_error(response, 422, code="sandbox_compile_error")
    assert "line" in error["message"]
    assert (await client.get("/v2/tools/broken")).status_code == 404


async def test_a_runtime_error_names_type_and_line_with_secrets_masked(
    client: httpx.AsyncClient,
) -> None:
    code = "x = 1\nraise ValueError('bad token ' + TOKEN)\n"
    await client.post("/v2/tools", json=code_tool("raiser", code))
    answer = await execute(client, "raiser", arguments={})
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "sandbox_runtime_error"
    assert "ValueError" in answer["error"]["message"]
    assert "***" in answer["error"]["message"]


async def test_an_import_outside_the_allowed_modules_is_refused(client: httpx.AsyncClient) -> None:
    await client.post("/v2/tools", json=code_tool("importer", "import os\nresult = 1\n"))
    answer = await execute(client, "importer", arguments={})
    assert answer["error"]["code"] == "sandbox_runtime_error"
    assert "json" in answer["error"]["message"], "the message lists what is allowed"


async def test_an_endless_loop_times_out(client: httpx.AsyncClient) -> None:
    tool = code_tool("spinner", "while True:\n    pass\n", timeout=1)
    await client.post("/v2/tools", json=tool)
    answer = await execute(client, "spinner", arguments={})
    assert answer["error"]["code"] == "sandbox_timeout"
    again = await execute(client, "spinner", arguments={}, timeout=0.5)
    assert again["error"]["code"] == "tool_timeout", "the call's own deadline ran out first"
    assert "0.5 s" in again["error"]["message"]


async def test_the_http_helper_carries_a_secret_only_to_an_allowed_host(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    code = (
        "answer = http.get(url, headers={'Authorization': 'Bearer ' + TOKEN})\n"
        "seen = answer['body']['headers']['authorization']\n"
        "result = {'status': answer['status_code'], 'seen': seen}\n"
    )
    pinned = code_tool("pinned", code, allowed_hosts=["127.0.0.1"])
    unpinned = code_tool("unpinned", code)
    for tool in (pinned, unpinned):
        assert (await client.post("/v2/tools", json=tool)).status_code == 200
    url = upstream.url("/echo/code")

    allowed = await execute(client, "pinned", arguments={"url": url})
    assert allowed["status"] == "completed", allowed
    assert allowed["result"]["result"] == {"status": 200, "seen": "Bearer ***"}
    assert upstream.last("/echo/code")["headers"]["authorization"] == f"Bearer {SECRET}"

    refused = await execute(client, "unpinned", arguments={"url": url})
    assert refused["status"] == "failed"
    assert "allowed_hosts" in refused["error"]["message"]


async def test_readiness_reports_the_sandbox_layers(client: httpx.AsyncClient) -> None:
    checks = (await client.get("/readyz")).json()["checks"]
    assert checks["sandbox"]["enabled"] is True
    assert set(checks["sandbox"]["layers"]) >= {"rlimits", "seccomp", "network_namespace"}
    assert isinstance(checks["sandbox"]["prefault_pages"], int)
