"""`/v1/tools/execute/batch`: concurrent calls, answered in order, failing one by one."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.api.reflecting_upstream import ReflectingUpstream
from tests.api.support import (
    assert_error,
    function_tool,
    http_tool,
    make_settings,
    open_client,
)
from tests.support.secrets import assert_no_secret

pytestmark = pytest.mark.anyio

SECRET = "batch-s3cret-token-value"
# Long enough for a slow machine, far shorter than the upstream's own patience.
DEADLOCK_BOUND = 8.0


async def batch(client: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post("/v1/tools/execute/batch", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "list"
    data: list[dict[str, Any]] = answer["data"]
    return data


async def test_results_come_in_the_order_of_the_calls(client: httpx.AsyncClient) -> None:
    await client.post("/v2/tools", json=function_tool("weather"))
    calls: list[dict[str, Any]] = [
        {"tool": "weather", "arguments": {"city": "Oslo"}, "call_id": "a"},
        {"tool": "current_date", "call_id": "b"},
        {"tool": "current_date", "arguments": {"timezone": "Nowhere/Land"}, "call_id": "c"},
        {"tool": "weather", "arguments": {"city": "Rome"}, "call_id": "d"},
    ]
    results = await batch(client, {"calls": calls})
    assert [r["call_id"] for r in results] == ["a", "b", "c", "d"]
    assert [r["status"] for r in results] == [
        "requires_action",
        "completed",
        "failed",
        "requires_action",
    ]
    assert results[3]["function_call"]["arguments"] == '{"city": "Rome"}'


async def test_an_unknown_tool_fails_only_its_own_entry(client: httpx.AsyncClient) -> None:
    calls = [
        {"tool": "current_date", "call_id": "ok-1"},
        {"tool": "no-such-tool", "call_id": "bad"},
        {"tool": {"type": "orq:http", "key": "missing"}, "call_id": "bad-2"},
        {"tool": "current_date", "call_id": "ok-2"},
    ]
    results = await batch(client, {"calls": calls})
    assert [r["status"] for r in results] == ["completed", "failed", "failed", "completed"]
    assert results[1]["call_id"] == "bad"
    assert results[1]["error"]["code"] == "tool_not_found"
    assert results[2]["error"]["code"] == "tool_not_found"


async def test_a_malformed_reference_is_a_bad_request_naming_the_call(
    client: httpx.AsyncClient,
) -> None:
    calls = [{"tool": "current_date"}, {"tool": {"type": "carrier-pigeon"}}]
    response = await client.post("/v1/tools/execute/batch", json={"calls": calls})
    assert assert_error(response, 400)["param"] == "calls.1.tool.type"


async def test_batch_variables_apply_and_a_calls_own_win(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    tool = http_tool(
        "regional",
        upstream.url("/echo/regional"),
        headers={"X-Region": "{{region}}", "Authorization": "Bearer {{token}}"},
    )
    await client.post("/v2/tools", json=tool)
    body = {
        "variables": {"region": "eu", "token": {"secret": True, "value": SECRET}},
        "calls": [
            {"tool": "regional", "call_id": "shared"},
            {"tool": "regional", "call_id": "own", "variables": {"region": "us"}},
        ],
    }
    response = await client.post("/v1/tools/execute/batch", json=body)
    results = response.json()["data"]
    assert [r["status"] for r in results] == ["completed", "completed"], results
    regions = [r["result"]["body"]["headers"]["x-region"] for r in results]
    assert regions == ["eu", "us"]
    received = upstream.journal.to("/echo/regional")[-2:]
    assert {seen["headers"]["authorization"] for seen in received} == {f"Bearer {SECRET}"}
    assert all(r["result"]["body"]["headers"]["authorization"] == "Bearer ***" for r in results)
    assert_no_secret(response.text, SECRET)


async def test_a_calls_own_secret_is_redacted_in_its_entry(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    tool = http_tool("keyed", upstream.url("/reflect"), headers={"Authorization": "Bearer {{t}}"})
    await client.post("/v2/tools", json=tool)
    calls = [
        {"tool": "keyed", "variables": {"t": {"secret": True, "value": SECRET}}},
        {"tool": "keyed", "variables": {"t": "not-a-secret-at-all"}},
    ]
    response = await client.post("/v1/tools/execute/batch", json={"calls": calls})
    results = response.json()["data"]
    assert results[0]["result"]["body"]["plain"] == "***"
    assert results[1]["result"]["body"]["plain"] == "not-a-secret-at-all"
    assert_no_secret(response.text, SECRET)


async def test_calls_really_run_concurrently(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    size = 5
    # The upstream answers none of these until all of them are waiting at once.
    barrier = upstream.url(f"/barrier/{uuid.uuid4().hex}/{size}")
    await client.post("/v2/tools", json=http_tool("meet", barrier))
    calls = [{"tool": "meet", "call_id": f"c{i}"} for i in range(size)]
    with anyio.fail_after(DEADLOCK_BOUND):
        results = await batch(client, {"calls": calls})
    assert [r["call_id"] for r in results] == [f"c{i}" for i in range(size)]
    assert [r["result"]["body"]["released"] for r in results] == [True] * size


async def test_too_many_calls_are_a_bad_request(tmp_path: Path) -> None:
    async with open_client(make_settings(tmp_path, batch_max_calls=3)) as client:
        calls = [{"tool": "current_date"}] * 4
        response = await client.post("/v1/tools/execute/batch", json={"calls": calls})
        assert assert_error(response, 400)["param"] == "calls"
        assert len(await batch(client, {"calls": calls[:3]})) == 3


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"calls": []}, "calls"),
        ({}, "calls"),
        ({"calls": [{"tool": "x", "timeout": 0}]}, "calls.0.timeout"),
    ],
)
async def test_a_batch_outside_the_wire_model_is_a_bad_request(
    client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    error = assert_error(await client.post("/v1/tools/execute/batch", json=body), 400)
    assert error["param"] == param
