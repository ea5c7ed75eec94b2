"""`/v2/tools`: create, read, list, update and delete registered tools."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.api.support import assert_error, function_tool, http_tool

pytestmark = pytest.mark.anyio

TOOL_ID = re.compile(r"^tool_[0-9A-HJKMNP-TV-Z]{26}$")
URL = "https://api.example.com/items/{{id}}"


async def create(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v2/tools", json=body)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_creating_an_http_tool_answers_its_id_and_history(
    client: httpx.AsyncClient,
) -> None:
    tool = await create(client, http_tool("get-item", URL, arguments={"id": {"type": "string"}}))
    assert TOOL_ID.match(tool["_id"])
    assert tool["key"] == "get-item"
    assert tool["type"] == "http"
    assert tool["version"] == 1
    assert tool["created"]
    assert tool["updated"]
    assert tool["http"]["blueprint"]["url"] == URL


async def test_creating_a_function_tool_answers_its_id(client: httpx.AsyncClient) -> None:
    tool = await create(client, function_tool("weather"))
    assert TOOL_ID.match(tool["_id"])
    assert (tool["key"], tool["type"], tool["version"]) == ("weather", "function", 1)
    assert tool["function"]["name"] == "weather"


async def test_a_tool_is_found_by_prefixed_id_bare_ulid_and_key(
    client: httpx.AsyncClient,
) -> None:
    tool = await create(client, function_tool("weather"))
    bare = tool["_id"].removeprefix("tool_")
    for ident in (tool["_id"], bare, "weather"):
        response = await client.get(f"/v2/tools/{ident}")
        assert response.status_code == 200, ident
        assert response.json()["_id"] == tool["_id"]


async def test_a_duplicate_key_is_a_conflict(client: httpx.AsyncClient) -> None:
    await create(client, function_tool("weather"))
    response = await client.post("/v2/tools", json=function_tool("weather", name="other"))
    error = assert_error(response, 409)
    assert error["param"] == "key"


@pytest.mark.parametrize("key", ["1abc", "a__b", "a-", "-a", "a b", "a" * 65, ""])
async def test_a_key_outside_the_pattern_is_refused_naming_key(
    client: httpx.AsyncClient, key: str
) -> None:
    response = await client.post("/v2/tools", json=function_tool(key, name="f"))
    assert 400 <= response.status_code < 500
    error = assert_error(response, response.status_code)
    assert error["param"] == "key"
    assert "key" in error["message"]


@pytest.mark.parametrize("key", ["a", "A1", "a-b_c", "abc-d1-e2", "x" * 64])
async def test_keys_inside_the_pattern_are_accepted(client: httpx.AsyncClient, key: str) -> None:
    assert (await create(client, function_tool(key, name="f")))["key"] == key


@pytest.mark.parametrize(
    ("blueprint", "field"),
    [
        ({"method": "TRACE"}, "method"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": 601}, "timeout"),
        ({"headers": {"bad header": "x"}}, "headers"),
    ],
)
async def test_an_invalid_blueprint_names_the_field(
    client: httpx.AsyncClient, blueprint: dict[str, Any], field: str
) -> None:
    response = await client.post("/v2/tools", json=http_tool("t", URL, **blueprint))
    error = assert_error(response, 422, code="invalid_tool_definition")
    assert error["param"] == f"http.blueprint.{field}"
    assert field in error["message"]


async def test_an_argument_default_of_the_wrong_type_names_the_argument(
    client: httpx.AsyncClient,
) -> None:
    body = http_tool("t", URL, arguments={"id": {"type": "number", "default_value": "seven"}})
    error = assert_error(await client.post("/v2/tools", json=body), 422)
    assert error["param"] is not None
    assert error["param"].startswith("http.arguments.id")
    assert "default_value" in error["message"]


async def test_a_function_with_non_object_parameters_is_refused(
    client: httpx.AsyncClient,
) -> None:
    body = function_tool("f", parameters={"type": "array", "items": {"type": "string"}})
    error = assert_error(await client.post("/v2/tools", json=body), 422)
    assert error["param"] == "function.parameters"


@pytest.mark.parametrize("body", [[], "tool", {"type": "smoke", "key": "k"}, {"key": "k"}])
async def test_a_body_that_is_no_tool_definition_is_refused(
    client: httpx.AsyncClient, body: object
) -> None:
    response = await client.post("/v2/tools", json=body)
    assert_error(response, response.status_code)
    assert 400 <= response.status_code < 500


async def test_the_list_pages_newest_first(client: httpx.AsyncClient) -> None:
    ids = [(await create(client, function_tool(f"t{i}")))["_id"] for i in range(5)]
    newest_first = ids[::-1]

    first = (await client.get("/v2/tools", params={"limit": 2})).json()
    assert first["object"] == "list"
    assert [tool["_id"] for tool in first["data"]] == newest_first[:2]
    assert first["has_more"] is True

    after = newest_first[1]
    second = (await client.get("/v2/tools", params={"limit": 2, "starting_after": after})).json()
    assert [tool["_id"] for tool in second["data"]] == newest_first[2:4]
    assert second["has_more"] is True

    last = (await client.get("/v2/tools", params={"limit": 2, "starting_after": ids[1]})).json()
    assert [tool["_id"] for tool in last["data"]] == newest_first[4:]
    assert last["has_more"] is False

    before = (await client.get("/v2/tools", params={"limit": 2, "ending_before": ids[1]})).json()
    assert [tool["_id"] for tool in before["data"]] == newest_first[1:3]
    assert before["has_more"] is True

    everything = (await client.get("/v2/tools")).json()
    assert [tool["_id"] for tool in everything["data"]] == newest_first
    assert everything["has_more"] is False


async def test_a_limit_sent_as_a_float_is_read_as_the_whole_number(
    client: httpx.AsyncClient,
) -> None:
    for i in range(3):
        await create(client, function_tool(f"f{i}"))
    page = (await client.get("/v2/tools", params={"limit": "2.0"})).json()  # as orq's SDK sends
    assert len(page["data"]) == 2
    assert page["has_more"] is True


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "201", "1.5", "0.0", ".5", "1e2"])
async def test_a_bad_limit_is_a_bad_request(client: httpx.AsyncClient, limit: str) -> None:
    error = assert_error(await client.get("/v2/tools", params={"limit": limit}), 400)
    assert error["param"] == "limit"


async def test_patch_merges_top_level_fields_and_bumps_the_version(
    client: httpx.AsyncClient,
) -> None:
    tool = await create(client, function_tool("weather"))
    response = await client.patch(
        f"/v2/tools/{tool['_id']}", json={"description": "Now with rain", "status": "draft"}
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["description"] == "Now with rain"
    assert patched["status"] == "draft"
    assert patched["function"] == tool["function"]
    assert patched["version"] == 2
    assert patched["version_hash"] != tool["version_hash"]
    assert patched["created"] == tool["created"]
    fetched = (await client.get("/v2/tools/weather")).json()
    assert fetched["description"] == "Now with rain"
    assert fetched["version"] == 2


async def test_a_fetched_tool_can_be_sent_back_unchanged(client: httpx.AsyncClient) -> None:
    tool = await create(client, function_tool("weather"))
    patched = (await client.patch(f"/v2/tools/{tool['_id']}", json=tool)).json()
    assert patched["version"] == 2
    moving = {"version", "version_hash", "updated"}
    assert {k: v for k, v in patched.items() if k not in moving} == {
        k: v for k, v in tool.items() if k not in moving
    }


async def test_patch_cannot_change_the_type(client: httpx.AsyncClient) -> None:
    tool = await create(client, function_tool("weather"))
    change = {"type": "http", "http": {"blueprint": {"url": URL}}}
    error = assert_error(await client.patch(f"/v2/tools/{tool['_id']}", json=change), 400)
    assert error["param"] == "type"


async def test_patch_to_a_taken_key_is_a_conflict(client: httpx.AsyncClient) -> None:
    await create(client, function_tool("first"))
    second = await create(client, function_tool("second"))
    response = await client.patch(f"/v2/tools/{second['_id']}", json={"key": "first"})
    assert assert_error(response, 409)["param"] == "key"
    assert (await client.get("/v2/tools/second")).status_code == 200


async def test_patch_to_a_free_key_renames_the_tool(client: httpx.AsyncClient) -> None:
    tool = await create(client, function_tool("first"))
    await client.patch(f"/v2/tools/{tool['_id']}", json={"key": "renamed"})
    assert (await client.get("/v2/tools/renamed")).json()["_id"] == tool["_id"]
    assert_error(await client.get("/v2/tools/first"), 404, code="tool_not_found")


async def test_an_invalid_patch_names_the_field(client: httpx.AsyncClient) -> None:
    tool = await create(client, http_tool("t", URL))
    change = {"http": {"blueprint": {"url": URL, "method": "TRACE"}}}
    error = assert_error(await client.patch(f"/v2/tools/{tool['_id']}", json=change), 422)
    assert error["param"] == "http.blueprint.method"


async def test_delete_removes_the_tool(client: httpx.AsyncClient) -> None:
    tool = await create(client, function_tool("weather"))
    response = await client.delete(f"/v2/tools/{tool['_id']}")
    assert response.status_code == 200
    assert_error(await client.get(f"/v2/tools/{tool['_id']}"), 404, code="tool_not_found")
    assert_error(await client.delete(f"/v2/tools/{tool['_id']}"), 404)


async def test_an_unknown_tool_is_not_found(client: httpx.AsyncClient) -> None:
    error = assert_error(await client.get("/v2/tools/nope"), 404, code="tool_not_found")
    assert error["param"] == "tool_id"


async def test_both_cursors_at_once_are_a_bad_request(client: httpx.AsyncClient) -> None:
    tool = await create(client, function_tool("weather"))
    params = {"starting_after": tool["_id"], "ending_before": tool["_id"]}
    assert assert_error(await client.get("/v2/tools", params=params), 400)["param"]


async def test_every_change_leaves_a_version_record(client: httpx.AsyncClient) -> None:
    created = await create(client, function_tool("versioned"))
    tool_id = created["_id"]
    for text in ("second", "third"):
        patched = await client.patch(f"/v2/tools/{tool_id}", json={"description": text})
        assert patched.status_code == 200, patched.text

    listed = (await client.get(f"/v2/tools/{tool_id}/versions")).json()
    assert listed["object"] == "list"
    assert listed["has_more"] is False
    versions = listed["data"]
    assert [v["version"] for v in versions] == ["3", "2", "1"]
    first = "The versioned tool"
    assert [v["data"]["description"] for v in versions] == ["third", "second", first]
    assert {v["entityId"] for v in versions} == {tool_id}
    assert len({v["checksum"] for v in versions}) == 3
    one = (await client.get(f"/v2/tools/{tool_id}/versions/{versions[1]['_id']}")).json()
    assert one == versions[1]
    assert (
        len(
            (await client.get(f"/v2/tools/{tool_id}/versions", params={"limit": "1.0"})).json()[
                "data"
            ]
        )
        == 1
    )
    assert_error(await client.get(f"/v2/tools/{tool_id}/versions/nope"), 404)

    assert (await client.delete(f"/v2/tools/{tool_id}")).status_code == 200
    assert_error(await client.get(f"/v2/tools/{tool_id}/versions"), 404)
