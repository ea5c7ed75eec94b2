"""What the fuzzing found: values of the wrong type are refused, not coerced (`0` is not a
boolean), and a list route's query says each thing once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.support import assert_error, function_tool, http_tool

pytestmark = pytest.mark.anyio

URL = "http://127.0.0.1:9/x"


def _json_schema_tool(strict: object) -> dict[str, Any]:
    schema = {"name": "answer", "description": "", "schema": {}, "strict": strict}
    return {"type": "json_schema", "key": "answer", "json_schema": schema}


NOT_BOOLEANS: dict[str, tuple[dict[str, Any], str]] = {
    "json_schema.strict": (_json_schema_tool(0), "strict"),
    "function.strict": (function_tool("fn", strict="true"), "strict"),
    "header encrypted": (
        http_tool("h", URL, headers={"X-Key": {"value": "v", "encrypted": 1}}),
        "encrypted",
    ),
    "argument send_to_model": (
        http_tool(
            "a",
            URL,
            arguments={"q": {"type": "string", "description": "q", "send_to_model": "yes"}},
        ),
        "send_to_model",
    ),
}


@pytest.mark.parametrize(("body", "field"), NOT_BOOLEANS.values(), ids=NOT_BOOLEANS)
async def test_a_boolean_field_takes_only_true_or_false(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    error = assert_error(await client.post("/v2/tools", json=body), 422)
    assert field in (error["param"] or "") + error["message"]
    assert (await client.get(f"/v2/tools/{body['key']}")).status_code == 404  # nothing stored


async def test_an_agent_tool_entry_takes_only_a_boolean_requires_approval(
    client: httpx.AsyncClient,
) -> None:
    agent = {
        "key": "strict-agent",
        "role": "helper",
        "description": "d",
        "instructions": "i",
        "path": "Default",
        "model": "openai/gpt-4.1-mini",
        "settings": {"tools": [{"type": "current_date", "requires_approval": 0}]},
    }
    answer = await client.post("/v2/agents", json=agent)
    assert answer.status_code in (400, 422), answer.text
    assert "requires_approval" in answer.text


QUERIES = {
    "empty limit": ("limit=", "limit"),
    "limit twice": ("limit=1&limit=2", "limit"),
    "empty cursor": ("starting_after=", "starting_after"),
    "a fraction": ("limit=2.5", "limit"),
}


@pytest.mark.parametrize(("query", "param"), QUERIES.values(), ids=QUERIES)
@pytest.mark.parametrize("route", ["/v2/tools", "/v2/agents"])
async def test_a_list_query_says_each_thing_once_and_whole(
    client: httpx.AsyncClient, route: str, query: str, param: str
) -> None:
    error = assert_error(await client.get(f"{route}?{query}"), 400, code="invalid_request")
    assert error["param"] == param


async def test_the_sdks_float_limit_is_still_a_whole_number(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/tools?limit=50.0")).status_code == 200


NOT_NUMBERS = {
    "execute timeout true": (
        "/v1/tools/execute",
        {"tool": {"type": "orq:current_date"}, "timeout": True},
        "timeout",
    ),
    "execute timeout text": (
        "/v1/tools/execute",
        {"tool": {"type": "orq:current_date"}, "timeout": "5"},
        "timeout",
    ),
    "responses max_output_tokens text": (
        "/v1/responses",
        {"model": "openai/gpt-4.1-mini", "input": "hi", "max_output_tokens": "5"},
        "max_output_tokens",
    ),
    "responses limits boolean": (
        "/v1/responses",
        {"model": "openai/gpt-4.1-mini", "input": "hi", "limits": {"max_iterations": True}},
        "max_iterations",
    ),
    "http tool timeout boolean": ("/v2/tools", http_tool("t", URL, timeout=True), "timeout"),
}


@pytest.mark.parametrize(("route", "body", "field"), NOT_NUMBERS.values(), ids=NOT_NUMBERS)
async def test_a_number_field_takes_only_a_number(
    client: httpx.AsyncClient, route: str, body: dict[str, Any], field: str
) -> None:
    answer = await client.post(route, json=body)
    assert answer.status_code in (400, 422), answer.text
    assert field in answer.text


async def test_a_whole_float_is_a_whole_number_as_orqs_sdk_sends_it(
    client: httpx.AsyncClient,
) -> None:
    agent: dict[str, Any] = {
        "key": "float-agent",
        "role": "helper",
        "description": "d",
        "instructions": "i",
        "path": "Default",
        "model": "openai/gpt-4.1-mini",
        "settings": {"max_iterations": 10.0, "max_execution_time": 300.0, "tools": []},
    }
    created = await client.post("/v2/agents", json=agent)
    assert created.status_code == 201, created.text
    assert created.json()["settings"]["max_iterations"] == 10
    agent["key"], agent["settings"]["max_iterations"] = "fraction-agent", 10.5
    assert (await client.post("/v2/agents", json=agent)).status_code == 422
