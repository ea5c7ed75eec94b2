"""`respond` with the official TypeScript MCP client (from package.json), stdio and HTTP.

The client lists the tools and the agents' prompts, calls `respond` with progress
notifications, answers an approval question through elicitation, and aborts a call
while the fake provider holds it (which must let the provider call go).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_mcp_typescript_client import ROOT, SCRIPT, node
from tests.support.fake_providers import Call, FakeProvider, Slow, Text, ToolCalls
from tests.support.mcp_face import UPSTREAM_TOKEN, prepare_respond_workdir
from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import RunningSidecar, run_sidecar
from tests.support.upstream import RecordingUpstream

API_KEY = "ts-respond-api-key-8e2a"
TRANSPORTS = ["stdio", "http"]


@pytest.fixture(scope="module")
def workdir(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream, fake: FakeProvider
) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("respond-ts")
    return root, prepare_respond_workdir(root, upstream, fake)


@pytest.fixture(scope="module")
def served(workdir: tuple[Path, dict[str, str]]) -> Iterator[RunningSidecar]:
    root, env = workdir
    with run_sidecar(root, {**env, "SIDECAR_API_KEYS": API_KEY}) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_script(fake: FakeProvider) -> None:
    fake.reset()


def server_of(transport: str, workdir: tuple[Path, dict[str, str]], served: RunningSidecar) -> Any:
    root, env = workdir
    if transport == "stdio":
        stdio_env = {**env, "SIDECAR_STATE_DIR": str(root / "stdio-state")}
        return {
            "stdio": {
                "command": sys.executable,
                "args": ["-m", "sidecar", "mcp"],
                "env": stdio_env,
                "cwd": str(ROOT),
            }
        }
    return {
        "http": {
            "url": f"{served.base_url}/mcp",
            "headers": {"Authorization": f"Bearer {API_KEY}"},
        }
    }


def start_client(plan: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [node(), str(SCRIPT), json.dumps(plan)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    answer: dict[str, Any] = json.loads(stdout)
    return answer


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_typescript_client_runs_respond_with_progress_prompts_and_elicitation(
    transport: str,
    workdir: tuple[Path, dict[str, str]],
    served: RunningSidecar,
    fake: FakeProvider,
    upstream: RecordingUpstream,
) -> None:
    fake.reply(
        ToolCalls([Call("current_date", "{}")]),
        Text("Hello from the model."),
        ToolCalls([Call("echo_secret", '{"word": "typed"}')]),
        Text("Echoed it."),
    )
    plan = {
        "server": server_of(transport, workdir, served),
        "calls": [
            {
                "tool": "respond",
                "arguments": {"agent": "clerk", "input": "date?"},
                "progress": True,
            },
            {"tool": "respond", "arguments": {"agent": "clerk", "input": "echo typed"}},
        ],
        "prompts": {"get": "agent/clerk", "arguments": {"input": "find order 7"}},
        "elicit": {"action": "accept", "content": {"approve": True}},
    }
    answer = finish(start_client(plan))

    assert "respond" in {tool["name"] for tool in answer["tools"]}
    plain, agent = answer["calls"]
    assert plain["content"][0]["text"] == "Hello from the model."
    assert plain["structuredContent"]["status"] == "completed"
    # The TypeScript SDK handles notifications a microtask later than responses: a progress
    # notification that arrives in the same read as the answer is dropped as unknown. So
    # the notes of the last turn may be missing; those sent before a model call are not.
    heard = [note["message"] for note in plain["progress"]]
    sent = [
        "model turn 1 (chat/m)",
        "tool current_date running",
        "tool current_date completed",
        "model turn 2 (chat/m)",
    ]
    assert heard == sent[: len(heard)]
    assert len(heard) >= 3
    assert agent["content"][0]["text"] == "Echoed it."
    assert agent["structuredContent"]["output"][0]["status"] == "completed"
    assert len(answer["asked"]) == 1
    assert "echo_secret" in answer["asked"][0]
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_TOKEN}"
    assert [prompt["name"] for prompt in answer["prompts"]] == ["agent/clerk"]
    assert "find order 7" in answer["prompt"]["messages"][0]["content"]["text"]
    assert_no_secret(json.dumps(answer), UPSTREAM_TOKEN, where="client output")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_aborted_call_lets_the_provider_call_go(
    transport: str,
    workdir: tuple[Path, dict[str, str]],
    served: RunningSidecar,
    fake: FakeProvider,
) -> None:
    fake.reply(Slow(Text("too late"), seconds=30))
    plan = {
        "server": server_of(transport, workdir, served),
        "calls": [{"tool": "respond", "arguments": {"input": "slowly"}, "abort_on_stdin": True}],
    }
    process = start_client(plan)
    try:
        fake.wait_until(lambda: fake.holding == 1, timeout=30)
        assert process.stdin is not None
        process.stdin.write("abort\n")
        process.stdin.flush()
        fake.wait_until(lambda: fake.holding == 0, timeout=10)
    finally:
        assert process.stdin is not None
        process.stdin.write("done\n")
        process.stdin.flush()
        answer = finish(process)
    assert answer["calls"] == [{"aborted": True, "error": answer["calls"][0]["error"]}]
