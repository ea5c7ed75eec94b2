"""The MCP face over stdio: `sidecar mcp` as a real subprocess of a real MCP client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.support.mcp_face import (
    UPSTREAM_TOKEN,
    initialize_request,
    prepare_workdir,
    result_json,
    result_text,
)
from tests.support.secrets import assert_no_secret
from tests.support.upstream import RecordingUpstream

pytestmark = pytest.mark.anyio

INITIALIZE = initialize_request("raw-stdio")
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
LIST_TOOLS = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


@dataclass
class Workdir:
    root: Path
    env: dict[str, str]

    @property
    def log_path(self) -> Path:
        return self.root / "sidecar-mcp.log"

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def workdir(tmp_path: Path, upstream: RecordingUpstream) -> Workdir:
    variables = prepare_workdir(tmp_path, upstream.base_url)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SIDECAR_STATE_DIR": str(tmp_path / "state"),
        "SIDECAR_MANIFESTS_DIR": str(tmp_path / "manifests"),
        "SIDECAR_MCP_VARIABLES_FILE": str(variables),
        "SIDECAR_OUTBOUND_ALLOW": "127.0.0.1",
        "SIDECAR_LOG_FORMAT": "json",
    }
    return Workdir(tmp_path, env)


@asynccontextmanager
async def stdio_session(workdir: Workdir) -> AsyncIterator[Client]:
    """A client of `python -m sidecar mcp`; the process's stderr goes to the log file."""
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", "sidecar", "mcp"], env=workdir.env, cwd=workdir.root
    )
    with workdir.log_path.open("a", encoding="utf-8") as log:
        async with Client(stdio_client(parameters, errlog=log)) as client:
            yield client


async def test_stdio_lists_tools_and_runs_calls_with_the_file_secrets(
    workdir: Workdir, upstream: RecordingUpstream
) -> None:
    async with stdio_session(workdir) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        today = await client.call_tool("current_date", {})
        echoed = await client.call_tool("echo_secret", {"word": "stdio"})
    assert {"current_date", "echo_secret"} <= listed
    assert "ask_the_user" not in listed
    assert result_json(today)["currentDate"].endswith("Z")
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_TOKEN}"
    assert result_json(echoed)["body"]["headers"]["authorization"] == "Bearer ***"
    assert_no_secret(echoed.model_dump_json(), UPSTREAM_TOKEN, where="MCP result")
    assert "tool.executed" in workdir.logs()
    assert_no_secret(workdir.logs(), UPSTREAM_TOKEN, where="service logs")


async def test_stdio_answers_bad_calls_with_error_results_and_keeps_serving(
    workdir: Workdir,
) -> None:
    async with stdio_session(workdir) as client:
        unknown = await client.call_tool("no_such_tool", {"x": 1})
        invalid = await client.call_tool("echo_secret", {"word": ["not", "a", "string"]})
        good = await client.call_tool("current_date", {"timezone": "Europe/Lisbon"})
    assert unknown.is_error
    assert result_text(unknown).startswith("tool_not_found: ")
    assert invalid.is_error
    assert result_text(invalid).startswith("invalid_arguments: ")
    assert result_json(good)["timezone"] == "Europe/Lisbon"


def start(workdir: Workdir) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sidecar", "mcp"],
        env=workdir.env,
        cwd=workdir.root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def send(process: subprocess.Popen[bytes], *messages: dict[str, Any]) -> None:
    stdin: IO[bytes] | None = process.stdin
    assert stdin is not None
    for message in messages:
        stdin.write(json.dumps(message).encode() + b"\n")
    stdin.flush()


def read_message(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, "the server closed stdout"
    message: dict[str, Any] = json.loads(line)  # every line on stdout is protocol
    assert message["jsonrpc"] == "2.0"
    return message


@pytest.fixture
def raw_process(workdir: Workdir) -> Iterator[subprocess.Popen[bytes]]:
    with start(workdir) as process:  # closes the pipes
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def test_closing_stdin_closes_the_services_and_stdout_held_only_protocol(
    raw_process: subprocess.Popen[bytes],
) -> None:
    send(raw_process, INITIALIZE, INITIALIZED, LIST_TOOLS)
    assert read_message(raw_process)["id"] == 1
    assert read_message(raw_process)["id"] == 2
    assert raw_process.stdin is not None
    raw_process.stdin.close()
    assert raw_process.wait(timeout=30) == 0
    assert raw_process.stdout is not None
    assert raw_process.stdout.read() == b""
    assert raw_process.stderr is not None
    logs = raw_process.stderr.read().decode()
    assert "services.ready" in logs
    assert "services.closed" in logs


def test_sigterm_closes_the_services_and_ends_the_process(
    raw_process: subprocess.Popen[bytes],
) -> None:
    send(raw_process, INITIALIZE)
    assert read_message(raw_process)["id"] == 1
    raw_process.send_signal(signal.SIGTERM)
    assert raw_process.wait(timeout=30) == 0
    assert raw_process.stderr is not None
    logs = raw_process.stderr.read().decode()
    assert logs.index("services.closed") < logs.index("mcp.stopped")
