"""`/v1/tools/execute` of function tools (handed back) and HTTP tools (sent, redacted)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.reflecting_upstream import ReflectingUpstream
from tests.api.support import function_tool, http_tool, make_settings, open_client
from tests.support.secrets import assert_no_piece, assert_no_secret, random_secret

pytestmark = pytest.mark.anyio

# Characters that every encoding writes differently: quotes, slash, plus, ampersand, equals.
SECRET = 'sk-live/"Qx9"+tail&z=1'
PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}


async def execute(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/tools/execute", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def assert_hands_back(answer: dict[str, Any], call_id: str, name: str) -> None:
    assert answer["status"] == "requires_action", answer
    assert answer["call_id"] == call_id
    call = answer["function_call"]
    assert call["call_id"] == call_id
    assert call["name"] == name
    assert isinstance(call["arguments"], str)
    assert json.loads(call["arguments"]) == {"city": "Paris", "days": 2}
    assert "result" not in answer


@pytest.mark.parametrize(
    "tool",
    [
        "weather",
        {"type": "orq:function", "key": "weather"},
        {"type": "function", "key": "weather"},
    ],
)
async def test_a_registered_function_tool_is_handed_back(
    client: httpx.AsyncClient, tool: object
) -> None:
    await client.post("/v2/tools", json=function_tool("weather", name="get_weather"))
    body = {"tool": tool, "arguments": {"city": "Paris", "days": 2}, "call_id": "fc_1"}
    assert_hands_back(await execute(client, body), "fc_1", "get_weather")


async def test_a_registered_function_tool_is_found_by_its_id(client: httpx.AsyncClient) -> None:
    created = (await client.post("/v2/tools", json=function_tool("weather"))).json()
    tool = {"type": "orq:function", "tool_id": created["_id"]}
    body = {"tool": tool, "arguments": '{"city": "Paris", "days": 2}', "call_id": "fc_2"}
    assert_hands_back(await execute(client, body), "fc_2", "weather")


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "function", "function": {"name": "get_weather", "parameters": PARAMETERS}},
        {"type": "function", "name": "get_weather", "parameters": PARAMETERS},
    ],
)
async def test_an_inline_function_tool_is_handed_back(
    client: httpx.AsyncClient, tool: dict[str, Any]
) -> None:
    body = {"tool": tool, "arguments": {"city": "Paris", "days": 2}, "call_id": "fc_3"}
    assert_hands_back(await execute(client, body), "fc_3", "get_weather")


async def test_a_function_tools_arguments_are_validated(client: httpx.AsyncClient) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": PARAMETERS}
    answer = await execute(client, {"tool": tool, "arguments": {"city": "Paris", "days": "2"}})
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "invalid_arguments"
    assert answer["error"]["param"] == "days"


async def test_an_inline_function_with_a_bad_schema_is_a_bad_request(
    client: httpx.AsyncClient,
) -> None:
    tool = {"type": "function", "name": "f", "parameters": {"type": "string"}}
    response = await client.post("/v1/tools/execute", json={"tool": tool})
    assert response.status_code == 400
    assert response.json()["error"]["param"].startswith("tool.function.parameters")


def secret_tool(upstream: ReflectingUpstream, path: str) -> dict[str, Any]:
    """An HTTP tool that sends the `token` variable in a header, the query and the body."""
    return http_tool(
        "echo",
        upstream.url(path) + "?q={{q}}&token={{token}}",
        method="POST",
        headers={"Authorization": "Bearer {{token}}", "X-Query": "{{q}}"},
        body={"token": "{{token}}", "note": "sent with {{token}} inside", "q": "{{q}}"},
        arguments={"q": {"type": "string", "description": "What to look up"}},
    )


async def call_echo(
    client: httpx.AsyncClient, upstream: ReflectingUpstream, path: str, q: str, **plain: str
) -> httpx.Response:
    """Register the echo tool on `path` and call it with the secret and `plain` variables."""
    await client.post("/v2/tools", json=secret_tool(upstream, path))
    variables: dict[str, Any] = {"token": {"secret": True, "value": SECRET}, **plain}
    return await client.post(
        "/v1/tools/execute",
        json={"tool": "echo", "arguments": {"q": q}, "variables": variables},
    )


async def test_an_http_tool_sends_the_secret_and_never_answers_it(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    response = await call_echo(client, upstream, "/echo/secret", "rain", plain="visible")
    assert response.status_code == 200, response.text

    seen = upstream.last("/echo/secret")
    assert seen["method"] == "POST"
    assert seen["headers"]["authorization"] == f"Bearer {SECRET}"
    assert seen["query"] == {"q": "rain", "token": SECRET}
    assert seen["json"] == {"token": SECRET, "note": f"sent with {SECRET} inside", "q": "rain"}

    answer = response.json()
    assert answer["status"] == "completed", answer
    assert answer["result"]["status_code"] == 200
    echoed = answer["result"]["body"]
    assert echoed["headers"]["authorization"] == "Bearer ***"
    assert echoed["json"] == {"token": "***", "note": "sent with *** inside", "q": "rain"}
    assert_no_secret(response.text, SECRET)


async def reflect(
    client: httpx.AsyncClient, upstream: ReflectingUpstream, secret: str
) -> httpx.Response:
    """Call an HTTP tool whose upstream sends `secret` back in many encodings."""
    tool = http_tool(
        "reflect", upstream.url("/reflect"), headers={"Authorization": "Bearer {{token}}"}
    )
    await client.post("/v2/tools", json=tool)
    variables = {"token": {"secret": True, "value": secret}}
    return await client.post("/v1/tools/execute", json={"tool": "reflect", "variables": variables})


async def test_an_upstream_that_reflects_encodings_of_the_secret_is_redacted(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    response = await reflect(client, upstream, SECRET)
    answer = response.json()
    assert answer["status"] == "completed", answer
    reflected = answer["result"]["body"]
    assert set(reflected) >= {"plain", "base64", "url", "json_text", "html", "repr", "embedded"}
    assert reflected["plain"] == "***"
    assert reflected["embedded"] == "token=***;"
    assert_no_secret(response.text, SECRET)
    for form, value in reflected.items():
        assert "***" in value, f"the {form} form of the secret came back unmasked: {value!r}"


async def test_entity_and_shell_forms_of_a_secret_with_quotes_are_redacted(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    secret = 'it\'s-"quoted"-' + random_secret(random.Random(3), 16)
    response = await reflect(client, upstream, secret)
    reflected = response.json()["result"]["body"]
    for form in ("xml_named", "xml_decimal", "xml_hex", "html"):
        assert reflected[form] == "***", form
    assert reflected["shell"] == "curl -H 'Authorization: Bearer ***'"
    assert_no_piece(response.text, secret)


async def test_a_capped_body_never_ends_in_a_piece_of_a_secret(
    tmp_path: Path, upstream: ReflectingUpstream
) -> None:
    secret = random_secret(random.Random(4), 40)
    cap = 1024
    tool = http_tool(
        "padded",
        upstream.url("/pad?offset={{offset}}"),
        headers={"Authorization": "Bearer {{token}}"},
        arguments={"offset": {"type": "number", "description": "filler before the token"}},
    )
    async with open_client(make_settings(tmp_path, http_max_response_bytes=cap)) as client:
        assert (await client.post("/v2/tools", json=tool)).status_code == 200
        for offset in range(cap - len(secret) - 2, cap + 2):
            response = await client.post(
                "/v1/tools/execute",
                json={
                    "tool": "padded",
                    "arguments": {"offset": offset},
                    "variables": {"token": {"secret": True, "value": secret}},
                },
            )
            result = response.json()["result"]
            assert result["truncated"] is True
            assert len(result["body"].encode()) <= cap
            assert_no_piece(response.text, secret, where=f"body cut {cap - offset} characters in")


async def test_a_response_never_echoes_the_variables(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    response = await call_echo(client, upstream, "/echo/quiet", "x", region="eu-west-secretive")
    assert "variables" not in response.json()
    assert "eu-west-secretive" not in response.text
    assert_no_secret(response.text, SECRET)


async def test_a_missing_placeholder_value_is_named(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    await client.post("/v2/tools", json=secret_tool(upstream, "/echo/missing"))
    answer = await execute(client, {"tool": "echo", "arguments": {"q": "x"}})
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "invalid_arguments"
    assert answer["error"]["param"] == "token"
    assert upstream.journal.to("/echo/missing") == []


async def test_an_upstream_404_is_a_completed_call(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    tool = http_tool("gone", upstream.url("/status/404"))
    await client.post("/v2/tools", json=tool)
    answer = await execute(client, {"tool": "gone"})
    assert answer["status"] == "completed"
    assert answer["result"]["status_code"] == 404


async def test_an_unreachable_upstream_is_a_failed_call(client: httpx.AsyncClient) -> None:
    # Port 9 (discard) on loopback: nothing listens there in a test environment.
    await client.post("/v2/tools", json=http_tool("down", "http://127.0.0.1:9/x"))
    answer = await execute(client, {"tool": "down"})
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "upstream_error"


async def test_a_blocked_destination_is_a_failed_call(client: httpx.AsyncClient) -> None:
    await client.post("/v2/tools", json=http_tool("meta", "http://169.254.169.254/latest"))
    answer = await execute(client, {"tool": "meta"})
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "outbound_blocked"
