"""End to end: a real `sidecar serve` and a real upstream, both on loopback."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest

from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import RunningSidecar, run_sidecar
from tests.support.upstream import RecordingUpstream

API_KEY = "sk-live-9f8e7d6c5b4a3210-secret"
BODY_TOKEN = "tok_body+/=&?secret-77"
STORED_HEADER = "stored-header-value-5544"


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSidecar]:
    with run_sidecar(tmp_path_factory.mktemp("sidecar")) as running:
        yield running


def _weather_tool(upstream: RecordingUpstream) -> dict[str, object]:
    return {
        "type": "http",
        "key": "weather",
        "description": "Current weather for a city",
        "http": {
            "blueprint": {
                "url": upstream.base_url + "/weather/{{city}}?key={{API_KEY}}&units={{units}}",
                "method": "POST",
                "headers": {
                    "Authorization": "Bearer {{API_KEY}}",
                    "X-Stored": {"value": STORED_HEADER, "encrypted": True},
                },
                "body": {"token": "{{BODY_TOKEN}}", "days": "{{days}}", "note": "for {{city}}"},
                "timeout": 10,
            },
            "arguments": {
                "city": {"type": "string", "description": "City name"},
                "days": {"type": "number", "description": "Forecast days", "default_value": 1},
                "units": {
                    "type": "string",
                    "description": "unit system",
                    "send_to_model": False,
                    "default_value": "metric",
                },
            },
        },
    }


def test_register_resolve_and_execute_with_secrets(
    sidecar: RunningSidecar, upstream: RecordingUpstream
) -> None:
    with httpx.Client(base_url=sidecar.base_url, timeout=30) as client:
        created = client.post("/v2/tools", json=_weather_tool(upstream))
        assert created.status_code == 200, created.text
        tool_id = created.json()["_id"]
        assert tool_id.startswith("tool_")

        resolved = client.post(
            "/v1/tools/resolve", json={"tools": [{"type": "orq:http", "tool_id": tool_id}]}
        )
        assert resolved.status_code == 200, resolved.text
        definition = resolved.json()["tools"][0]
        assert definition["name"] == "weather"
        assert set(definition["parameters"]["properties"]) == {"city", "days"}
        assert definition["parameters"]["required"] == ["city"]

        executed = client.post(
            "/v1/tools/execute",
            json={
                "tool": {"type": "orq:http", "tool_id": tool_id},
                "arguments": json.dumps({"city": "São Paulo/centro", "days": 3, "units": "kelvin"}),
                "variables": {
                    "API_KEY": {"secret": True, "value": API_KEY},
                    "BODY_TOKEN": {"secret": True, "value": BODY_TOKEN},
                },
            },
        )
    assert executed.status_code == 200, executed.text
    outcome = executed.json()
    assert outcome["status"] == "completed", outcome
    assert outcome["result"]["status_code"] == 200

    received = upstream.requests[-1]
    assert received.path == "/weather/S%C3%A3o%20Paulo%2Fcentro"
    query = parse_qs(received.query)
    assert query["key"] == [API_KEY]
    assert query["units"] == ["metric"], "a send_to_model: false argument came from the model"
    assert received.headers["authorization"] == f"Bearer {API_KEY}"
    assert received.headers["x-stored"] == STORED_HEADER
    body = json.loads(received.body)
    assert body == {"token": BODY_TOKEN, "days": 3, "note": "for São Paulo/centro"}

    assert_no_secret(executed.text, API_KEY, BODY_TOKEN, STORED_HEADER, where="execute response")
    assert "***" in executed.text, "the upstream echoed the secrets, so masks must show"
    assert_no_secret(created.text, STORED_HEADER, where="create response")
    assert_no_secret(sidecar.logs(), API_KEY, BODY_TOKEN, STORED_HEADER, where="service logs")


def test_encrypted_header_is_not_readable_in_the_database(
    sidecar: RunningSidecar, upstream: RecordingUpstream
) -> None:
    tool = _weather_tool(upstream) | {"key": "weather-db-check"}
    with httpx.Client(base_url=sidecar.base_url, timeout=30) as client:
        assert client.post("/v2/tools", json=tool).status_code == 200
    files = sorted((sidecar.log_path.parent / "state").glob("registry.sqlite3*"))
    assert files, "the registry database was not created"
    raw = b"".join(path.read_bytes() for path in files)
    assert b"weather-db-check" in raw, "the check reads the file the tool was written to"
    for form in (STORED_HEADER.encode(), base64.b64encode(STORED_HEADER.encode())):
        assert form not in raw


def test_a_keep_alive_connection_idle_past_the_clients_expiry_is_still_open(
    sidecar: RunningSidecar,
) -> None:
    """httpx keeps an idle connection 5 s: the service must not close it first, or a
    request sent as it closes is lost (a reset, seen under load)."""
    host, port = sidecar.base_url.removeprefix("http://").split(":")
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        for attempt in range(2):
            if attempt:
                time.sleep(6)  # idle longer than uvicorn's own default of 5 s
            connection.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                chunk = connection.recv(4096)
                assert chunk, "the service closed the connection"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
