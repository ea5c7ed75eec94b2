"""Bad input gets the documented error, and the service keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import RunningSidecar, run_sidecar
from tests.support.upstream import RecordingUpstream, resetting_server

SECRET = "bad-input-secret-value-42"


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSidecar]:
    workdir = tmp_path_factory.mktemp("sidecar")
    with run_sidecar(workdir, {"SIDECAR_MAX_BODY_BYTES": "4096"}) as running:
        yield running


@pytest.fixture
def client(sidecar: RunningSidecar) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sidecar.base_url, timeout=30) as http:
        yield http
        still_serving = http.post("/v1/tools/execute", json={"tool": {"type": "orq:current_date"}})
        assert still_serving.json()["status"] == "completed"
        assert_no_secret(sidecar.logs(), SECRET, where="service logs")


def _inline(url: str, **blueprint: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "key": "probe",
        "http": {
            "blueprint": {"url": url, **blueprint},
            "arguments": {"n": {"type": "number", "description": "a number"}},
        },
    }


def _execute(client: httpx.Client, tool: Any, **extra: Any) -> httpx.Response:
    variables = {"TOKEN": {"secret": True, "value": SECRET}}
    return client.post("/v1/tools/execute", json={"tool": tool, "variables": variables, **extra})


def _failed(response: httpx.Response, code: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    outcome: dict[str, Any] = response.json()
    assert outcome["status"] == "failed", outcome
    assert outcome["error"]["code"] == code, outcome
    assert_no_secret(response.text, SECRET)
    return outcome


def test_malformed_json_is_a_400(client: httpx.Client) -> None:
    response = client.post(
        "/v1/tools/execute", content=b'{"tool": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_unknown_tool_is_a_404(client: httpx.Client) -> None:
    response = _execute(client, {"type": "orq:http", "tool_id": "no-such-tool"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "tool_not_found"


def test_wrong_argument_type_names_the_field(
    client: httpx.Client, upstream: RecordingUpstream
) -> None:
    response = _execute(client, _inline(f"{upstream.base_url}/n/{{{{n}}}}"), arguments={"n": "x"})
    outcome = _failed(response, "invalid_arguments")
    assert outcome["error"]["param"] == "n"


def test_placeholder_without_value_names_it(
    client: httpx.Client, upstream: RecordingUpstream
) -> None:
    response = _execute(client, _inline(f"{upstream.base_url}/{{{{missing}}}}"), arguments={"n": 1})
    outcome = _failed(response, "invalid_arguments")
    assert "missing" in outcome["error"]["message"]


def test_oversized_body_is_a_413(client: httpx.Client) -> None:
    response = client.post(
        "/v1/tools/execute",
        json={"tool": {"type": "orq:current_date"}, "arguments": {"pad": "x" * 10_000}},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_crlf_in_a_header_value_is_refused(
    client: httpx.Client, upstream: RecordingUpstream
) -> None:
    tool = _inline(f"{upstream.base_url}/h", headers={"X-Injected": "{{value}}"})
    tool["http"]["arguments"]["value"] = {"type": "string", "description": "v"}
    before = len(upstream.requests)
    response = _execute(client, tool, arguments={"n": 1, "value": "a\r\nX-Evil: 1"})
    _failed(response, "invalid_arguments")
    assert len(upstream.requests) == before, "nothing may be sent"


def test_blocked_destination_names_the_host(
    client: httpx.Client, upstream: RecordingUpstream
) -> None:
    port = upstream.base_url.rsplit(":", 1)[1]
    outcome = _failed(
        _execute(client, _inline(f"http://127.0.0.2:{port}/x"), arguments={"n": 1}),
        "outbound_blocked",
    )
    assert "127.0.0.2" in outcome["error"]["message"]


def test_redirect_to_a_blocked_host_is_refused(
    client: httpx.Client, upstream: RecordingUpstream
) -> None:
    port = upstream.base_url.rsplit(":", 1)[1]
    target = f"http://127.0.0.2:{port}/x"
    tool = _inline(f"{upstream.base_url}/redirect?to={target}")
    outcome = _failed(_execute(client, tool, arguments={"n": 1}), "outbound_blocked")
    assert "127.0.0.2" in outcome["error"]["message"]


def test_upstream_timeout_is_a_failed_call(
    client: httpx.Client, upstream: RecordingUpstream
) -> None:
    tool = _inline(f"{upstream.base_url}/slow?seconds=30", timeout=1)
    _failed(_execute(client, tool, arguments={"n": 1}), "upstream_timeout")


def test_connection_reset_is_a_failed_call(client: httpx.Client) -> None:
    with resetting_server() as base_url:
        tool = _inline(f"{base_url}/reset", headers={"Authorization": "Bearer {{TOKEN}}"})
        outcome = _failed(_execute(client, tool, arguments={"n": 1}), "upstream_error")
    assert "127.0.0.1" in outcome["error"]["message"]


def test_non_2xx_upstream_status_is_a_completed_call(
    client: httpx.Client, upstream: RecordingUpstream
) -> None:
    response = _execute(client, _inline(f"{upstream.base_url}/status/404"), arguments={"n": 1})
    outcome = response.json()
    assert outcome["status"] == "completed"
    assert outcome["result"]["status_code"] == 404
