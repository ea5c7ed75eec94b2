"""`/v1/tools/resolve`: the function definitions a model sees, each with its reference."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.support import assert_error, function_tool, http_tool

pytestmark = pytest.mark.anyio


async def resolve(client: httpx.AsyncClient, tools: list[Any]) -> list[dict[str, Any]]:
    response = await client.post("/v1/tools/resolve", json={"tools": tools})
    assert response.status_code == 200, response.text
    resolved: list[dict[str, Any]] = response.json()["tools"]
    return resolved


async def test_current_date_resolves_to_its_definition(client: httpx.AsyncClient) -> None:
    entry = {"type": "orq:current_date"}
    [definition] = await resolve(client, [entry])
    assert definition["type"] == "function"
    assert definition["name"] == "current_date"
    assert definition["description"]
    assert definition["parameters"]["type"] == "object"
    assert set(definition["parameters"]["properties"]) == {"timezone"}
    assert definition["tool"] == entry


async def test_an_http_tool_shows_only_what_the_model_may_send(
    client: httpx.AsyncClient,
) -> None:
    arguments = {
        "city": {"type": "string", "description": "City name"},
        "units": {"type": "string", "default_value": "metric"},
        "verbose": {"type": "boolean"},
        "api_version": {"type": "number", "send_to_model": False, "default_value": 2},
    }
    body = http_tool(
        "forecast",
        "https://weather.example/{{api_version}}/{{city}}?u={{units}}&v={{verbose}}",
        arguments=arguments,
    )
    created = (await client.post("/v2/tools", json=body)).json()
    entry = {"type": "orq:http", "tool_id": created["_id"]}
    [definition] = await resolve(client, [entry])
    assert definition["name"] == "forecast"
    assert definition["description"] == "The forecast tool"
    parameters = definition["parameters"]
    assert parameters["type"] == "object"
    assert set(parameters["properties"]) == {"city", "units", "verbose"}
    assert parameters["properties"]["city"] == {"type": "string", "description": "City name"}
    assert parameters["properties"]["verbose"]["type"] == "boolean"
    assert sorted(parameters["required"]) == ["city", "verbose"]
    assert definition["tool"] == entry


async def test_a_function_tool_resolves_to_its_own_schema(client: httpx.AsyncClient) -> None:
    body = function_tool("weather", name="get_weather", strict=True)
    await client.post("/v2/tools", json=body)
    [definition] = await resolve(client, [{"type": "function", "key": "weather"}])
    assert definition["name"] == "get_weather"
    assert definition["parameters"] == body["function"]["parameters"]
    assert definition["strict"] is True
    assert definition["tool"] == {"type": "function", "key": "weather"}


async def test_inline_tools_resolve_in_the_order_given(client: httpx.AsyncClient) -> None:
    flat = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    resolved = await resolve(client, [flat, "current_date"])
    assert [d["name"] for d in resolved] == ["lookup", "current_date"]
    assert [d["tool"] for d in resolved] == [flat, "current_date"]


@pytest.mark.parametrize(
    "entry", ["missing", {"type": "orq:http", "key": "missing"}, {"type": "orq:nothing"}]
)
async def test_an_unknown_tool_is_not_found(client: httpx.AsyncClient, entry: object) -> None:
    response = await client.post("/v1/tools/resolve", json={"tools": ["current_date", entry]})
    assert_error(response, 404, code="tool_not_found")


@pytest.mark.parametrize(
    ("body", "param"),
    [({"tools": []}, "tools"), ({"tools": [{"type": "carrier-pigeon"}]}, "tools.0.type")],
)
async def test_a_bad_resolve_request_names_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    assert assert_error(await client.post("/v1/tools/resolve", json=body), 400)["param"] == param
