"""The lean `/mcp` path for `tools/call` of the 2026 revision, against a real `sidecar serve`.

Raw HTTP requests, as the 2026 revision writes them, check that the lean path answers
byte for byte what the `mcp` package answers for the same call (a progress token sends
a call down the package's path), that the requests it does not take reach the package
and get its refusals, and that a client that leaves cancels the call.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fake_providers import FakeProvider
from tests.support.mcp_face import UPSTREAM_TOKEN, prepare_respond_workdir
from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import RunningSidecar, run_sidecar
from tests.support.upstream import RecordingUpstream

REVISION = "2026-07-28"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream, fake: FakeProvider
) -> Iterator[RunningSidecar]:
    root: Path = tmp_path_factory.mktemp("lean-calls")
    with run_sidecar(root, prepare_respond_workdir(root, upstream, fake)) as running:
        yield running


def call_body(name: str, arguments: dict[str, Any], **meta: Any) -> dict[str, Any]:
    envelope = {
        "io.modelcontextprotocol/protocolVersion": REVISION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        **meta,
    }
    return {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": envelope},
    }


def headers(name: str) -> dict[str, str]:
    return {
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": REVISION,
        "mcp-method": "tools/call",
        "mcp-name": name,
    }


def post(served: RunningSidecar, body: dict[str, Any], sent: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{served.base_url}/mcp", json=body, headers=sent, timeout=30)


def test_the_lean_path_answers_what_the_package_answers(
    served: RunningSidecar, upstream: RecordingUpstream
) -> None:
    arguments = {"word": "lean"}
    lean = post(served, call_body("echo_secret", arguments), headers("echo_secret"))
    package = post(
        served, call_body("echo_secret", arguments, progressToken="p1"), headers("echo_secret")
    )
    assert lean.status_code == package.status_code == 200
    assert lean.headers["content-type"] == package.headers["content-type"] == "application/json"
    assert undated(lean.json()) == undated(package.json())
    result = lean.json()["result"]
    assert result["isError"] is False
    assert result["resultType"] == "complete"
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_TOKEN}"
    assert_no_secret(lean.text, UPSTREAM_TOKEN, where="lean answer")


def undated(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without the upstream's `date` header (the one part that differs by call)."""
    result = answer["result"]
    result["structuredContent"]["headers"].pop("date")
    for block in result["content"]:
        shown = json.loads(block["text"])
        shown["headers"].pop("date")
        block["text"] = shown
    return answer


def test_an_unknown_tool_is_answered_by_the_package_as_an_error_result(
    served: RunningSidecar,
) -> None:
    answer = post(served, call_body("no_such_tool", {}), headers("no_such_tool"))
    result = answer.json()["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("tool_not_found: ")


def test_a_routing_header_that_differs_from_the_body_gets_the_package_refusal(
    served: RunningSidecar, upstream: RecordingUpstream
) -> None:
    before = len(upstream.requests)
    answer = post(served, call_body("echo_secret", {"word": "x"}), headers("current_date"))
    assert answer.status_code == 400
    assert "mcp-name" in answer.json()["error"]["message"]
    assert len(upstream.requests) == before


def test_a_client_that_leaves_cancels_the_call(
    served: RunningSidecar, upstream: RecordingUpstream
) -> None:
    upstream.slow_events.clear()
    body = json.dumps(call_body("slow_lookup", {})).encode()
    port = int(served.base_url.rsplit(":", 1)[1])
    head = "".join(f"{name}: {value}\r\n" for name, value in headers("slow_lookup").items())
    request = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{head}\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        wait_for(lambda: upstream.slow_events == ["started"])
    wait_for(lambda: upstream.slow_events == ["started", "left"])


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)
