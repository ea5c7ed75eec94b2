"""`json_schema` tools: a structured answer offered to the model as a function, never run."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.api.support import assert_error

pytestmark = pytest.mark.anyio

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "rating": {"type": "integer"}},
    "required": ["title", "rating"],
    "additionalProperties": False,
}


def review_tool(key: str = "review", **json_schema: Any) -> dict[str, Any]:
    """A `/v2/tools` body for a `json_schema` tool, as orq's SDK sends it."""
    return {
        "type": "json_schema",
        "key": key,
        "path": "Default",
        "description": "A film review",
        "json_schema": {
            "name": "film_review",
            "description": "The review, as structured data",
            "schema": ANSWER_SCHEMA,
            "strict": True,
            **json_schema,
        },
    }


async def execute(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/tools/execute", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_json_schema_tool_is_stored_and_shown_in_orqs_shape(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post("/v2/tools", json=review_tool())
    assert created.status_code == 200, created.text
    tool = created.json()
    assert tool["type"] == "json_schema"
    assert tool["json_schema"] == {
        "name": "film_review",
        "description": "The review, as structured data",
        "schema": ANSWER_SCHEMA,
        "strict": True,
    }
    fetched = (await client.get(f"/v2/tools/{tool['_id']}")).json()
    assert fetched["json_schema"] == tool["json_schema"]
    listed = (await client.get("/v2/tools", params={"limit": "50.0"})).json()
    assert [entry["key"] for entry in listed["data"]] == ["review"]


async def test_an_update_of_the_schema_makes_a_new_version(client: httpx.AsyncClient) -> None:
    tool = (await client.post("/v2/tools", json=review_tool())).json()
    looser = {**ANSWER_SCHEMA, "required": ["title"]}
    body = {"json_schema": {**review_tool()["json_schema"], "schema": looser}}
    updated = await client.patch(f"/v2/tools/{tool['_id']}", json=body)
    assert updated.status_code == 200, updated.text
    assert updated.json()["json_schema"]["schema"]["required"] == ["title"]
    versions = (await client.get(f"/v2/tools/{tool['_id']}/versions")).json()["data"]
    assert len(versions) == 2


@pytest.mark.parametrize(
    ("json_schema", "param"),
    [
        ({"schema": {"type": "string"}}, "json_schema.schema"),
        ({"schema": {"type": "object", "properties": 3}}, "json_schema.schema"),
        ({"name": "has spaces"}, "json_schema.name"),
    ],
)
async def test_a_bad_json_schema_tool_is_refused_naming_the_field(
    client: httpx.AsyncClient, json_schema: dict[str, Any], param: str
) -> None:
    response = await client.post("/v2/tools", json=review_tool(**json_schema))
    assert assert_error(response, 422)["param"] == param


@pytest.mark.parametrize("by", ["key", "tool_id"])
async def test_executing_a_json_schema_tool_hands_the_answer_back(
    client: httpx.AsyncClient, by: str
) -> None:
    tool = (await client.post("/v2/tools", json=review_tool())).json()
    reference = {"type": "orq:json_schema", by: tool["key"] if by == "key" else tool["_id"]}
    arguments = {"title": "Stalker", "rating": 5}
    answer = await execute(client, {"tool": reference, "arguments": arguments, "call_id": "c1"})
    assert answer["status"] == "requires_action", answer
    call = answer["function_call"]
    assert (call["call_id"], call["name"]) == ("c1", "film_review")
    assert json.loads(call["arguments"]) == arguments


async def test_an_answer_that_misses_the_schema_is_invalid_arguments(
    client: httpx.AsyncClient,
) -> None:
    inline = {"type": "json_schema", "json_schema": review_tool()["json_schema"]}
    answer = await execute(client, {"tool": inline, "arguments": {"title": "Stalker"}})
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "invalid_arguments"
    assert "rating" in answer["error"]["message"]


async def test_a_json_schema_tool_resolves_to_a_function_of_its_schema(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/v2/tools", json=review_tool())
    response = await client.post("/v1/tools/resolve", json={"tools": ["review"]})
    assert response.status_code == 200, response.text
    (definition,) = response.json()["tools"]
    assert definition["name"] == "film_review"
    assert definition["parameters"] == ANSWER_SCHEMA
    assert definition["strict"] is True
