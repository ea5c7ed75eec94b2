"""`/v2/tools`: encrypted header values never come back, and manifest tools are read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sidecar.errors import ManifestError
from tests.api.reflecting_upstream import ReflectingUpstream
from tests.api.support import (
    assert_error,
    http_tool,
    make_settings,
    open_client,
)
from tests.support.secrets import assert_no_secret

pytestmark = pytest.mark.anyio

HEADER_SECRET = "s3cr3t-header-value"
MASK = "***"


def secured_tool(upstream: ReflectingUpstream, key: str = "secured") -> dict[str, Any]:
    headers = {
        "X-Api-Key": {"value": HEADER_SECRET, "encrypted": True},
        "X-Plain": "visible",
    }
    return http_tool(key, upstream.url("/echo/secured"), headers=headers)


def shown_headers(tool: dict[str, Any]) -> dict[str, Any]:
    headers: dict[str, Any] = tool["http"]["blueprint"]["headers"]
    return headers


async def test_an_encrypted_header_is_masked_when_created_read_and_listed(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    created = await client.post("/v2/tools", json=secured_tool(upstream))
    fetched = await client.get("/v2/tools/secured")
    listed = await client.get("/v2/tools")
    for response in (created, fetched, listed):
        assert response.status_code == 200, response.text
        assert_no_secret(response.text, HEADER_SECRET)
        assert "enc:v1:" not in response.text
    for tool in (created.json(), fetched.json(), listed.json()["data"][0]):
        assert shown_headers(tool)["X-Api-Key"] == {"value": MASK, "encrypted": True}
        assert shown_headers(tool)["X-Plain"] == "visible"


async def test_sending_the_mask_back_keeps_the_working_value(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    fetched = (await client.post("/v2/tools", json=secured_tool(upstream))).json()
    fetched["description"] = "Changed, header untouched"
    patched = await client.patch(f"/v2/tools/{fetched['_id']}", json=fetched)
    assert patched.status_code == 200, patched.text
    assert_no_secret(patched.text, HEADER_SECRET)
    assert patched.json()["version"] == 2

    response = await client.post("/v1/tools/execute", json={"tool": "secured"})
    assert response.status_code == 200, response.text
    assert upstream.last("/echo/secured")["headers"]["x-api-key"] == HEADER_SECRET
    execution = response.json()
    assert execution["status"] == "completed", execution
    echoed = execution["result"]["body"]
    assert echoed["headers"]["x-api-key"] == MASK
    assert echoed["headers"]["x-plain"] == "visible"
    assert_no_secret(response.text, HEADER_SECRET)


async def test_the_upstream_receives_the_decrypted_header(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    body = http_tool(
        "mirror",
        upstream.url("/echo/mirror"),
        headers={"X-Api-Key": {"value": HEADER_SECRET, "encrypted": True}},
    )
    await client.post("/v2/tools", json=body)
    response = await client.post("/v1/tools/execute", json={"tool": "mirror"})
    execution = response.json()
    assert execution["status"] == "completed", execution
    assert upstream.last("/echo/mirror")["headers"]["x-api-key"] == HEADER_SECRET
    assert execution["result"]["body"]["headers"]["x-api-key"] == MASK
    assert_no_secret(response.text, HEADER_SECRET)


async def test_a_new_value_replaces_the_encrypted_header(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    tool = (await client.post("/v2/tools", json=secured_tool(upstream))).json()
    change = secured_tool(upstream)
    change["http"]["blueprint"]["headers"]["X-Api-Key"]["value"] = "an0ther-secret-value"
    patched = await client.patch(f"/v2/tools/{tool['_id']}", json={"http": change["http"]})
    assert patched.status_code == 200, patched.text
    assert_no_secret(patched.text, HEADER_SECRET, "an0ther-secret-value")
    response = await client.post("/v1/tools/execute", json={"tool": tool["_id"]})
    assert upstream.last("/echo/secured")["headers"]["x-api-key"] == "an0ther-secret-value"
    assert response.json()["result"]["body"]["headers"]["x-api-key"] == MASK
    assert_no_secret(response.text, HEADER_SECRET, "an0ther-secret-value")


async def test_the_mask_for_a_header_with_no_stored_value_is_refused(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    tool = (await client.post("/v2/tools", json=secured_tool(upstream))).json()
    tool["http"]["blueprint"]["headers"]["X-Other"] = {"value": MASK, "encrypted": True}
    patched = await client.patch(f"/v2/tools/{tool['_id']}", json=tool)
    error = assert_error(patched, 400)
    assert "X-Other" in error["message"]
    created = await client.post(
        "/v2/tools",
        json=http_tool(
            "masked-new", upstream.url("/x"), headers={"A": {"value": MASK, "encrypted": True}}
        ),
    )
    assert_error(created, 400)


async def test_the_mask_matches_the_stored_header_whatever_its_case(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    tool = (await client.post("/v2/tools", json=secured_tool(upstream))).json()
    headers = tool["http"]["blueprint"]["headers"]
    headers["x-api-key"] = headers.pop("X-Api-Key")
    assert (await client.patch(f"/v2/tools/{tool['_id']}", json=tool)).status_code == 200
    await client.post("/v1/tools/execute", json={"tool": "secured"})
    assert upstream.last("/echo/secured")["headers"]["x-api-key"] == HEADER_SECRET


async def test_a_value_that_only_looks_encrypted_is_refused(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    forged = {"A": {"value": "enc:v1:not-a-real-token", "encrypted": True}}
    response = await client.post(
        "/v2/tools", json=http_tool("forged", upstream.url("/x"), headers=forged)
    )
    error = assert_error(response, 400)
    assert "cannot decrypt" in error["message"]


async def test_a_fetched_tool_sent_back_unchanged_keeps_its_version_hash(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    tool = (await client.post("/v2/tools", json=secured_tool(upstream))).json()
    patched = (await client.patch(f"/v2/tools/{tool['_id']}", json=tool)).json()
    assert patched["version"] == tool["version"] + 1
    assert patched["version_hash"] == tool["version_hash"]


def write_manifest(root: Path, name: str, document: object) -> Path:
    folder = root / "manifests" / "tools"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


async def test_manifest_tools_are_listed_and_read_only(tmp_path: Path) -> None:
    write_manifest(
        tmp_path,
        "weather.yaml",
        {
            "type": "function",
            "key": "weather",
            "function": {"name": "weather", "parameters": {"type": "object"}},
        },
    )
    async with open_client(make_settings(tmp_path)) as client:
        listed = (await client.get("/v2/tools")).json()["data"]
        assert [(tool["key"], tool["source"]) for tool in listed] == [("weather", "manifest")]
        tool_id = listed[0]["_id"]
        assert (await client.get(f"/v2/tools/{tool_id}")).json()["source"] == "manifest"

        change = await client.patch(f"/v2/tools/{tool_id}", json={"description": "x"})
        assert_error(change, 409, code="read_only_tool")
        assert_error(await client.delete("/v2/tools/weather"), 409, code="read_only_tool")
        assert (await client.get("/v2/tools/weather")).status_code == 200


async def test_manifest_tools_come_after_api_tools_newest_first(tmp_path: Path) -> None:
    for key in ("alpha", "beta"):
        document = {"type": "function", "key": key, "function": {"name": key}}
        write_manifest(tmp_path, f"{key}.yaml", document)
    async with open_client(make_settings(tmp_path)) as client:
        for key in ("first", "second"):
            body = {"type": "function", "key": key, "function": {"name": key}}
            assert (await client.post("/v2/tools", json=body)).status_code == 200
        keys = [tool["key"] for tool in (await client.get("/v2/tools")).json()["data"]]
    assert keys[:2] == ["second", "first"]
    assert sorted(keys[2:]) == ["alpha", "beta"]


async def test_a_manifest_key_cannot_be_registered_again(tmp_path: Path) -> None:
    write_manifest(
        tmp_path, "weather.yaml", {"type": "function", "key": "weather", "function": {"name": "w"}}
    )
    async with open_client(make_settings(tmp_path)) as client:
        again = {"type": "function", "key": "weather", "function": {"name": "w"}}
        assert assert_error(await client.post("/v2/tools", json=again), 409)["param"] == "key"


async def test_a_manifest_encrypted_header_is_masked(
    tmp_path: Path, upstream: ReflectingUpstream
) -> None:
    write_manifest(tmp_path, "secured.yaml", secured_tool(upstream))
    async with open_client(make_settings(tmp_path)) as client:
        for response in (await client.get("/v2/tools/secured"), await client.get("/v2/tools")):
            assert response.status_code == 200
            assert_no_secret(response.text, HEADER_SECRET)
        executed = await client.post("/v1/tools/execute", json={"tool": "secured"})
        assert executed.json()["status"] == "completed"
        assert upstream.last("/echo/secured")["headers"]["x-api-key"] == HEADER_SECRET
        assert_no_secret(executed.text, HEADER_SECRET)


async def test_a_bad_manifest_stops_startup_naming_file_and_field(tmp_path: Path) -> None:
    bad = {"type": "http", "key": "broken", "http": {"blueprint": {"url": "https://x.example"}}}
    bad["http"]["blueprint"]["method"] = "TRACE"  # type: ignore[index]
    path = write_manifest(tmp_path, "broken.yaml", bad)
    with pytest.raises(ManifestError) as caught:
        async with open_client(make_settings(tmp_path)):
            pass
    assert str(path) in caught.value.message
    assert "blueprint.method" in caught.value.message


async def test_a_manifest_that_is_not_yaml_stops_startup(tmp_path: Path) -> None:
    folder = tmp_path / "manifests" / "tools"
    folder.mkdir(parents=True)
    (folder / "mangled.yaml").write_text("key: [unclosed", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"mangled\.yaml"):
        async with open_client(make_settings(tmp_path)):
            pass


async def test_the_mask_does_not_follow_the_url_to_another_host(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    tool = (await client.post("/v2/tools", json=secured_tool(upstream))).json()
    tool["http"]["blueprint"]["url"] = "http://127.0.0.9:9/steal"
    moved = await client.patch(f"/v2/tools/{tool['_id']}", json=tool)
    error = assert_error(moved, 400)
    assert "sent again" in error["message"]
    await client.post("/v1/tools/execute", json={"tool": "secured"})
    assert upstream.last("/echo/secured")["headers"]["x-api-key"] == HEADER_SECRET


async def test_an_inline_tool_cannot_have_a_stored_value_decrypted(
    client: httpx.AsyncClient, upstream: ReflectingUpstream
) -> None:
    await client.post("/v2/tools", json=secured_tool(upstream))
    stored = await client.get("/v2/tools/secured")
    assert stored.status_code == 200
    inline = http_tool(
        "thief",
        upstream.url("/echo/thief"),
        headers={"X-Api-Key": {"value": "enc:v1:gAAAAABnot-a-real-token", "encrypted": True}},
    )
    response = await client.post("/v1/tools/execute", json={"tool": inline})
    assert_error(response, 400)
    assert not upstream.journal.to("/echo/thief"), "nothing may be sent"
