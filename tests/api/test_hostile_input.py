"""Hostile or odd input: a clear error naming the problem, never a 500, a hang or a fetch."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.api.reflecting_upstream import ReflectingUpstream
from tests.api.support import assert_error, http_tool
from tests.support.secrets import assert_no_secret

pytestmark = pytest.mark.anyio

FLAT_FUNCTION = {"type": "function", "name": "f"}


async def post_raw(client: httpx.AsyncClient, body: str) -> httpx.Response:
    headers = {"content-type": "application/json"}
    return await client.post("/v1/tools/execute", content=body, headers=headers)


async def test_a_schema_reference_to_a_url_is_refused_and_never_fetched(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    remote = {"$ref": upstream.url("/schema.json")}
    tool = {**FLAT_FUNCTION, "parameters": {"type": "object", "properties": {"a": remote}}}
    response = await client.post("/v1/tools/execute", json={"tool": tool, "arguments": {"a": 1}})
    assert "local references" in assert_error(response, 400)["message"]
    function = {"name": "remote", "parameters": tool["parameters"]}
    registered = {"type": "function", "key": "remote", "function": function}
    assert_error(await client.post("/v2/tools", json=registered), 422)
    assert not upstream.journal.to("/schema.json"), "nothing may be fetched"


async def test_a_recursive_schema_is_an_argument_error(client: httpx.AsyncClient) -> None:
    schema = {
        "type": "object",
        "$defs": {"a": {"$ref": "#/$defs/a"}},
        "properties": {"x": {"$ref": "#/$defs/a"}},
    }
    body = {"tool": {**FLAT_FUNCTION, "parameters": schema}, "arguments": {"x": 1}}
    answer = (await client.post("/v1/tools/execute", json=body)).json()
    assert answer["error"]["code"] == "invalid_arguments"


@pytest.mark.parametrize(
    "body",
    [
        '{"tool": "current_date", "arguments": {"x": ' + "[" * 10_000 + "]" * 10_000 + "}}",
        '{"tool": "current_date", "arguments": {"x": ' + "1" * 5_000 + "}}",
        '{"tool": "current_date", "arguments": {"x": NaN}}',
    ],
    ids=["deep-nesting", "huge-integer", "nan"],
)
async def test_json_no_parser_should_accept_is_a_400(client: httpx.AsyncClient, body: str) -> None:
    assert_error(await post_raw(client, body), 400)
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize(
    "arguments", ['{"x": NaN}', '{"x": Infinity}', "[" * 5_000 + "]" * 5_000, "1" * 5_000]
)
async def test_argument_strings_json_does_not_allow_are_argument_errors(
    client: httpx.AsyncClient, arguments: str
) -> None:
    body = {"tool": FLAT_FUNCTION, "arguments": arguments}
    answer = (await client.post("/v1/tools/execute", json=body)).json()
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "invalid_arguments"


async def test_a_lone_surrogate_is_answered_as_valid_json(client: httpx.AsyncClient) -> None:
    body = {"tool": FLAT_FUNCTION, "arguments": '{"a": "\\ud800"}'}
    response = await client.post("/v1/tools/execute", json=body)
    assert response.status_code == 200
    assert json.loads(response.json()["function_call"]["arguments"]) == {"a": "\ud800"}


@pytest.mark.parametrize("limit", ["%C2%B2", "0", "-1", "abc", "201"])
async def test_a_bad_page_size_is_a_400(client: httpx.AsyncClient, limit: str) -> None:
    assert_error(await client.get(f"/v2/tools?limit={limit}"), 400)


async def test_an_unknown_tool_in_a_batch_keeps_the_secrets_of_its_call_masked(
    client: httpx.AsyncClient,
) -> None:
    secret = "batch-secret-in-call-id-77"
    call: dict[str, Any] = {
        "tool": {"type": "orq:http", "tool_id": f"no-{secret}"},
        "call_id": f"call-{secret}",
        "variables": {"S": {"secret": True, "value": secret}},
    }
    response = await client.post("/v1/tools/execute/batch", json={"calls": [call]})
    assert response.status_code == 200
    assert_no_secret(response.text, secret)
    single = await client.post("/v1/tools/execute", json=call)
    assert_error(single, 404, code="tool_not_found")
    assert_no_secret(single.text, secret)


async def test_version_hash_does_not_depend_on_an_encrypted_value(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    hashes = set()
    for secret in ("first-secret-value", "second-secret-value"):
        headers = {"X-Key": {"value": secret, "encrypted": True}}
        tool = http_tool("same", upstream.url("/x"), headers=headers)
        created = (await client.post("/v2/tools", json=tool)).json()
        hashes.add(created["version_hash"])
        await client.delete(f"/v2/tools/{created['_id']}")
    assert len(hashes) == 1


@pytest.mark.parametrize("cursor", ["starting_after", "ending_before"])
async def test_an_unknown_cursor_is_a_400_naming_it(client: httpx.AsyncClient, cursor: str) -> None:
    error = assert_error(await client.get(f"/v2/tools?{cursor}=no-such-key"), 400)
    assert error["param"] == cursor


@pytest.mark.parametrize(
    ("blueprint", "arguments"),
    [
        ({"url": "{{base}}/x"}, {"base": "http://[::1"}),
        ({"url": "http://127.0.0.1:9/x", "headers": {"X-Name": "{{name}}"}}, {"name": "日本"}),
    ],
    ids=["broken-url", "non-latin-header"],
)
async def test_values_http_cannot_carry_are_argument_errors(
    client: httpx.AsyncClient, blueprint: dict[str, Any], arguments: dict[str, str]
) -> None:
    names = {name: {"type": "string", "description": name} for name in arguments}
    tool = {"type": "http", "key": "odd", "http": {"blueprint": blueprint, "arguments": names}}
    body = {"tool": tool, "arguments": arguments}
    answer = (await client.post("/v1/tools/execute", json=body)).json()
    assert answer["error"]["code"] == "invalid_arguments", answer


async def test_a_wrong_body_type_names_the_field_not_pydantic_internals(
    client: httpx.AsyncClient,
) -> None:
    error = assert_error(await client.post("/v1/tools/execute", json={"tool": 5}), 400)
    assert error["param"] == "tool"
