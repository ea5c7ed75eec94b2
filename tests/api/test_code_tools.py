"""Python code tools through the API, run in the real sandbox (zygote and confined children)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.reflecting_upstream import ReflectingUpstream
from tests.api.support import assert_error, make_settings, open_client
from tests.support.secrets import assert_no_piece, assert_no_secret

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
    client: httpx.AsyncClient, upstream: ReflectingUpstream
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


# Where the sandbox used to cut messages itself (a dict key's repr at 57 characters,
# an exception's text at 997) and where the service cuts error messages now (2,000
# characters): a secret placed at every offset across each must not leave in part.
KEY_CUT = 57
EXCEPTION_CUT = 997
MESSAGE_CUT = 2_000


async def test_an_invalid_result_quoting_a_secret_never_leaves_a_piece_of_it(
    client: httpx.AsyncClient,
) -> None:
    code = "result = {('.' * n + TOKEN,): 1}\n"
    await client.post("/v2/tools", json=code_tool("bad_key", code))
    message_start = len("invalid result: result must be plain JSON: dict key ('")
    offsets = [
        *range(KEY_CUT - len(SECRET) - 4, KEY_CUT + 1),
        *range(MESSAGE_CUT - message_start - len(SECRET) - 4, MESSAGE_CUT - message_start + 1),
    ]
    for n in offsets:
        answer = await execute(client, "bad_key", arguments={"n": n})
        message = answer["error"]["message"]
        assert message.startswith("invalid result: result must be plain JSON: dict key"), answer
        assert len(message) <= MESSAGE_CUT
        assert_no_piece(message, SECRET, where=f"message with {n} characters before the secret")


async def test_a_runtime_error_quoting_a_secret_never_leaves_a_piece_of_it(
    client: httpx.AsyncClient,
) -> None:
    await client.post(
        "/v2/tools", json=code_tool("raise_long", "raise ValueError('.' * n + TOKEN)")
    )
    room = MESSAGE_CUT - len("...") - len("ValueError: ")
    offsets = [
        *range(EXCEPTION_CUT - len(SECRET) - 2, EXCEPTION_CUT + 2),
        *range(room - len(SECRET) - 2, room + 2),
    ]
    for n in offsets:
        answer = await execute(client, "raise_long", arguments={"n": n})
        message = answer["error"]["message"]
        assert message.startswith("ValueError: ...")
        assert len(message) <= MESSAGE_CUT
        assert_no_piece(message, SECRET, where=f"message with {n} characters before the secret")


async def test_entity_and_shell_forms_of_a_secret_in_a_result_are_masked(
    tmp_path: Path,
) -> None:
    secret = "sk'live\"" + SECRET
    code = (
        'quoted = "\'" + TOKEN.replace("\'", "\'\\"\'\\"\'") + "\'"\n'
        "xml = TOKEN.replace('&', '&amp;').replace('\"', '&quot;')\n"
        "result = {\n"
        "    'apos': xml.replace(\"'\", '&apos;'),\n"
        "    'decimal': xml.replace(\"'\", '&#39;'),\n"
        "    'hex': xml.replace(\"'\", '&#x27;'),\n"
        "    'shell': 'curl -H ' + quoted,\n"
        "}\n"
        "print(result['shell'])\n"
    )
    async with open_client(make_settings(tmp_path, sandbox_enabled=True)) as client:
        await client.post("/v2/tools", json=code_tool("encoder", code))
        response = await client.post(
            "/v1/tools/execute",
            json={
                "tool": {"type": "code", "key": "encoder"},
                "variables": {"TOKEN": {"secret": True, "value": secret}},
            },
        )
    answer = response.json()
    assert answer["result"] == {
        "result": {"apos": "***", "decimal": "***", "hex": "***", "shell": "curl -H '***'"},
        "stdout": "curl -H '***'\n",
    }
    assert_no_piece(response.text, secret)


async def test_the_http_helper_pins_a_secret_in_a_header_name_or_a_form_field(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    code = (
        "if how == 'header':\n"
        "    answer = http.get(url, headers={TOKEN: 'present'})\n"
        "else:\n"
        "    answer = http.post(url, data={'note': 'key ' + TOKEN})\n"
        "result = answer['status_code']\n"
    )
    parameters = {"type": "object", "properties": {"how": {"type": "string"}}}
    for key, hosts in (("pinned_names", ["127.0.0.1"]), ("open_names", [])):
        tool = code_tool(key, code, allowed_hosts=hosts, parameters=parameters)
        assert (await client.post("/v2/tools", json=tool)).status_code == 200
    url = upstream.url("/echo/names")

    for how, place in (("header", "header name"), ("form", "body (a form field value)")):
        refused = await execute(client, "open_names", arguments={"url": url, "how": how})
        assert refused["status"] == "failed"
        assert f"secret in its {place}" in refused["error"]["message"]
        assert not upstream.journal.to("/echo/names"), "the refused request was sent"

    allowed = await execute(client, "pinned_names", arguments={"url": url, "how": "header"})
    assert allowed["result"]["result"] == 200, allowed
    assert upstream.last("/echo/names")["headers"][SECRET] == "present"
    allowed = await execute(client, "pinned_names", arguments={"url": url, "how": "form"})
    assert allowed["result"]["result"] == 200, allowed
    assert upstream.last("/echo/names")["text"] == f"note=key+{SECRET}"


async def test_a_huge_message_cut_by_the_sandbox_inside_a_secret_leaves_no_piece_of_it(
    client: httpx.AsyncClient,
) -> None:
    # Repeated, the secret masks down to one `***`, so the end of what the sandbox
    # sent (65,536 characters) reaches the caller: every offset of the cut inside it.
    code = "raise ValueError('.' * n + TOKEN * 3200)"
    await client.post("/v2/tools", json=code_tool("raise_huge", code))
    for n in range(len(SECRET)):
        answer = await execute(client, "raise_huge", arguments={"n": n})
        message = answer["error"]["message"]
        assert message.startswith("ValueError: "), answer
        assert message.endswith("..."), "the message says it was cut"
        assert len(message.removesuffix("...").rsplit("***", 1)[1]) < 3, "the cut tail is masked"
        assert_no_piece(message, SECRET, where=f"a message cut {n} characters later")
