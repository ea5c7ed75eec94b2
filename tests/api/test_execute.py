"""`/v1/tools/execute`: the request contract, arguments and the platform tool current_date."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.support import assert_error, function_tool, make_settings, open_client

pytestmark = pytest.mark.anyio

UTC_MILLIS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
LOCAL_MILLIS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")


async def execute(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/tools/execute", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert isinstance(answer["duration_ms"], float | int)
    return answer


@pytest.mark.parametrize("tool", [{"type": "orq:current_date"}, "current_date"])
async def test_current_date_answers_utc_with_milliseconds(
    client: httpx.AsyncClient, tool: object
) -> None:
    answer = await execute(client, {"tool": tool, "call_id": "call-1"})
    assert answer["status"] == "completed"
    assert answer["call_id"] == "call-1"
    assert answer["tool"] == "current_date"
    assert set(answer["result"]) == {"currentDate"}
    stamp = answer["result"]["currentDate"]
    assert UTC_MILLIS.match(stamp), stamp
    moment = datetime.fromisoformat(stamp)
    assert abs(moment - datetime.now(UTC)) < timedelta(hours=1)


async def test_current_date_in_a_timezone_adds_the_local_time(
    client: httpx.AsyncClient,
) -> None:
    body = {"tool": {"type": "orq:current_date"}, "arguments": {"timezone": "Asia/Kolkata"}}
    result = (await execute(client, body))["result"]
    assert UTC_MILLIS.match(result["currentDate"])
    assert LOCAL_MILLIS.match(result["localDate"])
    assert result["localDate"].endswith("+05:30")
    assert result["timezone"] == "Asia/Kolkata"
    utc = datetime.fromisoformat(result["currentDate"])
    assert datetime.fromisoformat(result["localDate"]) == utc


async def test_an_unknown_timezone_is_a_failed_call(client: httpx.AsyncClient) -> None:
    body = {"tool": {"type": "orq:current_date"}, "arguments": {"timezone": "Mars/Olympus"}}
    answer = await execute(client, body)
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "invalid_arguments"
    assert answer["error"]["param"] == "timezone"
    assert "Mars/Olympus" in answer["error"]["message"]
    assert "result" not in answer


async def test_arguments_may_be_the_models_json_string(client: httpx.AsyncClient) -> None:
    body = {"tool": "current_date", "arguments": '{"timezone": "Europe/Amsterdam"}'}
    assert (await execute(client, body))["result"]["timezone"] == "Europe/Amsterdam"


@pytest.mark.parametrize("arguments", ['{"timezone": ', "not json", "[1, 2]", '"text"'])
async def test_arguments_that_are_no_json_object_fail_the_call(
    client: httpx.AsyncClient, arguments: str
) -> None:
    answer = await execute(client, {"tool": "current_date", "arguments": arguments})
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "invalid_arguments"


async def test_an_argument_of_the_wrong_type_is_named(client: httpx.AsyncClient) -> None:
    answer = await execute(client, {"tool": "current_date", "arguments": {"timezone": 5}})
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "invalid_arguments"
    assert answer["error"]["param"] == "timezone"
    assert "timezone" in answer["error"]["message"]


async def test_a_missing_required_argument_is_named(client: httpx.AsyncClient) -> None:
    await client.post("/v2/tools", json=function_tool("weather"))
    answer = await execute(client, {"tool": "weather", "arguments": {"days": 3}})
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "invalid_arguments"
    assert answer["error"]["param"] == "city"
    assert "city" in answer["error"]["message"]


async def test_a_call_id_is_made_when_none_is_given(client: httpx.AsyncClient) -> None:
    answer = await execute(client, {"tool": "current_date"})
    assert re.match(r"^call_[0-9A-Z]{26}$", answer["call_id"])


@pytest.mark.parametrize(
    "tool",
    [
        "no-such-tool",
        {"type": "orq:no_such_platform_tool"},
        {"type": "orq:http", "tool_id": "tool_01J0000000000000000000000Z"},
        {"type": "function", "key": "missing"},
    ],
)
async def test_an_unknown_tool_is_not_found(client: httpx.AsyncClient, tool: object) -> None:
    response = await client.post("/v1/tools/execute", json={"tool": tool})
    assert_error(response, 404, code="tool_not_found")


async def test_a_reference_of_the_wrong_kind_is_not_found(client: httpx.AsyncClient) -> None:
    await client.post("/v2/tools", json=function_tool("weather"))
    response = await client.post(
        "/v1/tools/execute", json={"tool": {"type": "orq:http", "key": "weather"}}
    )
    assert_error(response, 404, code="tool_not_found")


@pytest.mark.parametrize("content", [b"{", b'{"tool": "current_date",}', b"\xff\xfe", b""])
async def test_a_malformed_body_is_a_bad_request(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(
        "/v1/tools/execute", content=content, headers={"content-type": "application/json"}
    )
    assert_error(response, 400)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tool": "current_date", "timeout": -1}, "timeout"),
        ({"tool": "current_date", "timeout": 601}, "timeout"),
        ({"tool": "current_date", "unexpected": 1}, "unexpected"),
        ({"arguments": {}}, "tool"),
        ({"tool": "current_date", "call_id": "x" * 257}, "call_id"),
        ({"tool": {"type": 7}}, "tool.type"),
        ({"tool": {"type": "carrier-pigeon"}}, "tool.type"),
    ],
)
async def test_a_body_outside_the_wire_model_names_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    error = assert_error(await client.post("/v1/tools/execute", json=body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


async def test_a_secret_variable_without_a_string_value_is_a_bad_request(
    client: httpx.AsyncClient,
) -> None:
    body = {"tool": "current_date", "variables": {"token": {"secret": True, "value": 5}}}
    error = assert_error(await client.post("/v1/tools/execute", json=body), 400)
    assert error["param"] == "variables.token"


@pytest.fixture
async def small_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(make_settings(tmp_path, max_body_bytes=2048)) as client:
        yield client


async def test_a_body_over_the_limit_is_refused(small_client: httpx.AsyncClient) -> None:
    body = {"tool": "current_date", "arguments": {"padding": "x" * 4096}}
    response = await small_client.post("/v1/tools/execute", json=body)
    assert_error(response, 413, code="payload_too_large")


async def test_a_streamed_body_over_the_limit_is_refused(small_client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"tool": "current_date", "arguments": {"padding": "'
        for _ in range(8):
            yield b"x" * 512
        yield b'"}}'

    response = await small_client.post(
        "/v1/tools/execute", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, code="payload_too_large")


async def test_a_body_under_the_limit_is_served(small_client: httpx.AsyncClient) -> None:
    response = await small_client.post("/v1/tools/execute", json={"tool": "current_date"})
    assert response.status_code == 200


async def test_a_secret_in_the_call_id_is_masked(client: httpx.AsyncClient) -> None:
    secret = "call-id-secret-4711"
    answer = await execute(
        client,
        {
            "tool": "current_date",
            "call_id": f"call-{secret}",
            "variables": {"S": {"secret": True, "value": secret}},
        },
    )
    assert answer["call_id"] == "call-***"
