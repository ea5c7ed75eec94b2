"""The MCP face with a third-party client: the official TypeScript SDK, from package.json.

`make test` installs it (`npm ci`, into node_modules/); a missing install fails these
tests with a message saying so, it never skips them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.mcp_face import UPSTREAM_TOKEN, prepare_workdir
from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import RunningSidecar, run_sidecar
from tests.support.upstream import RecordingUpstream

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("mcp_client.mjs")
SDK = ROOT / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
API_KEY = "ts-client-api-key-5d0e"
CALLS = [
    {"tool": "current_date", "arguments": {"timezone": "America/Sao_Paulo"}},
    {"tool": "echo_secret", "arguments": {"word": "typescript"}},
    {"tool": "no_such_tool", "arguments": {}},
]


def node() -> str:
    found = shutil.which("node")
    if found is None or not SDK.is_file():
        pytest.fail("the TypeScript MCP client is not installed: run `make node` (npm ci)")
    return found


def run_client(server: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """What the client printed (parsed) and what it and its server wrote to stderr."""
    plan = json.dumps({"server": server, "calls": CALLS})
    finished = subprocess.run(
        [node(), str(SCRIPT), plan],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert finished.returncode == 0, finished.stderr
    answer: dict[str, Any] = json.loads(finished.stdout)
    return answer, finished.stderr


def check_answer(answer: dict[str, Any], upstream: RecordingUpstream) -> None:
    assert answer["server"]["name"] == "orq-sidecar"
    tools = {tool["name"]: tool for tool in answer["tools"]}
    assert {"current_date", "echo_secret"} <= set(tools)
    assert "ask_the_user" not in tools
    assert all(tool["description"] for tool in tools.values())
    today, echoed, unknown = answer["calls"]
    assert today["isError"] is False
    assert today["structuredContent"]["timezone"] == "America/Sao_Paulo"
    assert json.loads(today["content"][0]["text"]) == today["structuredContent"]
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_TOKEN}"
    assert echoed["structuredContent"]["body"]["headers"]["authorization"] == "Bearer ***"
    assert unknown["isError"] is True
    assert unknown["content"][0]["text"].startswith("tool_not_found: ")
    assert_no_secret(json.dumps(answer), UPSTREAM_TOKEN, where="client output")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream) -> Path:
    root = tmp_path_factory.mktemp("mcp-ts")
    prepare_workdir(root, upstream.base_url)
    return root


@pytest.fixture(scope="module")
def sidecar(workdir: Path) -> Iterator[RunningSidecar]:
    env = {
        "SIDECAR_API_KEYS": API_KEY,
        "SIDECAR_MCP_VARIABLES_FILE": str(workdir / "mcp-variables.yaml"),
    }
    with run_sidecar(workdir, env) as running:
        yield running


def test_the_typescript_client_works_over_stdio(workdir: Path, upstream: RecordingUpstream) -> None:
    env = {
        "SIDECAR_STATE_DIR": str(workdir / "stdio-state"),
        "SIDECAR_MANIFESTS_DIR": str(workdir / "manifests"),
        "SIDECAR_MCP_VARIABLES_FILE": str(workdir / "mcp-variables.yaml"),
        "SIDECAR_OUTBOUND_ALLOW": "127.0.0.1",
    }
    server = {
        "stdio": {
            "command": sys.executable,
            "args": ["-m", "sidecar", "mcp"],
            "env": env,
            "cwd": str(ROOT),
        }
    }
    answer, stderr = run_client(server)
    check_answer(answer, upstream)
    assert "tool.executed" in stderr, "the server's logs reach stderr"
    assert_no_secret(stderr, UPSTREAM_TOKEN, where="server logs")


def test_the_typescript_client_works_over_http(
    sidecar: RunningSidecar, upstream: RecordingUpstream
) -> None:
    server = {
        "http": {
            "url": f"{sidecar.base_url}/mcp",
            "headers": {"Authorization": f"Bearer {API_KEY}"},
        }
    }
    answer, _ = run_client(server)
    check_answer(answer, upstream)
    assert_no_secret(sidecar.logs(), UPSTREAM_TOKEN, API_KEY, where="service logs")


def test_the_typescript_client_is_refused_without_the_key(sidecar: RunningSidecar) -> None:
    plan = json.dumps({"server": {"http": {"url": f"{sidecar.base_url}/mcp", "headers": {}}}})
    finished = subprocess.run(
        [node(), str(SCRIPT), plan], capture_output=True, text=True, timeout=60, check=False
    )
    assert finished.returncode != 0
    assert "401" in finished.stderr
    assert finished.stdout == ""
