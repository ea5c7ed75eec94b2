"""The edge: bearer auth, request ids, OpenAPI, metrics, health and unknown routes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.support import assert_error, make_settings, open_client

pytestmark = pytest.mark.anyio

KEYS = ("k1-first-bearer-key", "k2-second-bearer-key")
GENERATED_ID = re.compile(r"^req_[0-9A-Z]{26}$")


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(make_settings(tmp_path, api_keys=KEYS)) as client:
        yield client


def assert_no_keys(response: httpx.Response) -> None:
    shown = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
    for key in KEYS:
        assert key not in shown


async def test_a_request_without_a_key_is_unauthorized(guarded: httpx.AsyncClient) -> None:
    response = await guarded.get("/v2/tools")
    assert_error(response, 401, code="unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_no_keys(response)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong",
        f"Basic {KEYS[0]}",
        "Bearer ",
        f"Bearer {KEYS[0]}x",
        f"Bearer {KEYS[0][:-1]}",
        KEYS[0],
    ],
)
async def test_a_wrong_key_is_unauthorized(guarded: httpx.AsyncClient, authorization: str) -> None:
    response = await guarded.get("/v2/tools", headers={"authorization": authorization})
    assert_error(response, 401, code="unauthorized")
    assert_no_keys(response)


@pytest.mark.parametrize("key", KEYS)
async def test_any_configured_key_is_accepted(guarded: httpx.AsyncClient, key: str) -> None:
    headers = {"authorization": f"Bearer {key}"}
    assert (await guarded.get("/v2/tools", headers=headers)).status_code == 200
    execute = await guarded.post(
        "/v1/tools/execute", json={"tool": "current_date"}, headers=headers
    )
    assert execute.status_code == 200
    assert_no_keys(execute)


async def test_the_scheme_is_case_insensitive(guarded: httpx.AsyncClient) -> None:
    response = await guarded.get("/v2/tools", headers={"authorization": f"bearer {KEYS[1]}"})
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_is_open_without_a_key(guarded: httpx.AsyncClient, path: str) -> None:
    response = await guarded.get(path)
    assert response.status_code == 200
    assert_no_keys(response)


@pytest.mark.parametrize("path", ["/metrics", "/openapi.json", "/v2/tools/anything"])
async def test_every_other_route_needs_a_key(guarded: httpx.AsyncClient, path: str) -> None:
    assert_error(await guarded.get(path), 401)


async def test_readiness_reports_its_checks(client: httpx.AsyncClient) -> None:
    body = (await client.get("/readyz")).json()
    assert body["status"] == "ready"
    assert body["checks"]["store"]["ok"] is True
    assert "current_date" in body["checks"]["registry"]["platform_tools"]
    assert body["checks"]["mcp"] == {"ok": True, "upstream_connections": 0}
    assert (await client.get("/healthz")).json() == {"status": "ok"}


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(value) for value in node))
    return set()


async def test_the_openapi_document_lists_paths_and_components(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert {
        "/v1/tools/execute",
        "/v1/tools/execute/batch",
        "/v1/tools/resolve",
        "/v2/tools",
        "/v2/tools/{tool_id}",
        "/v2/tools/{tool_id}/versions",
        "/v2/tools/{tool_id}/versions/{version_id}",
        "/v2/agents",
        "/v2/agents/{agent_key}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v3/router/responses",
        "/v3/router/responses/{response_id}",
        "/v1/responses",
        "/v1/responses/{response_id}",
    } == set(document["paths"])
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert document["paths"]["/readyz"]["get"]["security"] == []
    assert document["security"] == [{"bearer": []}]
    assert set(document["paths"]["/v2/tools/{tool_id}"]) >= {"get", "patch", "delete"}
    assert set(document["paths"]["/v2/agents/{agent_key}"]) >= {"get", "patch", "delete"}
    assert "201" in document["paths"]["/v2/agents"]["post"]["responses"]
    schemas = document["components"]["schemas"]
    assert {"ExecuteRequest", "ExecuteResponse", "BatchRequest", "ErrorResponse"} <= set(schemas)
    assert "AgentDefinition" in schemas
    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


async def test_metrics_count_tool_calls(client: httpx.AsyncClient) -> None:
    await client.post("/v1/tools/execute", json={"tool": "current_date"})
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert 'sidecar_tool_calls_total{kind="current_date",status="completed"} 1' in lines
    assert any(line.startswith("sidecar_http_requests_total{") for line in lines)


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient) -> None:
    responses = [
        await client.get("/healthz"),
        await client.post("/v1/tools/execute", json={"tool": "current_date"}),
        await client.get("/nowhere"),
        await client.post("/v1/tools/execute", content=b"{"),
    ]
    ids = [response.headers["x-request-id"] for response in responses]
    assert all(GENERATED_ID.match(request_id) for request_id in ids), ids
    assert len(set(ids)) == len(ids)


async def test_a_sane_incoming_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"x-request-id": "gw-42.abc:def_1"})
    assert response.headers["x-request-id"] == "gw-42.abc:def_1"


@pytest.mark.parametrize("offered", ["has space", "x" * 129, "semi;colon", "<script>"])
async def test_an_odd_incoming_request_id_is_replaced(
    client: httpx.AsyncClient, offered: str
) -> None:
    response = await client.get("/healthz", headers={"x-request-id": offered})
    assert GENERATED_ID.match(response.headers["x-request-id"])


async def test_a_refused_request_carries_a_request_id(guarded: httpx.AsyncClient) -> None:
    response = await guarded.get("/v2/tools", headers={"x-request-id": "refused-1"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "refused-1"


async def test_an_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    error = assert_error(await client.get("/v3/nothing/here"), 404, code="not_found")
    assert "/v3/nothing/here" in error["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/tools/execute"), ("PUT", "/v2/tools"), ("POST", "/healthz")],
)
async def test_a_wrong_method_is_a_json_405(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert_error(response, 405, code="method_not_allowed")


async def test_a_405_lists_every_method_the_path_accepts(client: httpx.AsyncClient) -> None:
    response = await client.put("/v2/tools/some-key")
    assert_error(response, 405, code="method_not_allowed")
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
