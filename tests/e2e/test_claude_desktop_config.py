"""The Claude Desktop block of the README, started exactly as written (paths of a test dir).

The command, its arguments and its environment come from the README's JSON; the test
replaces the example paths with its own and adds only `OPENAI_BASE_URL`, so that the
provider key goes to a scripted fake on loopback instead of OpenAI. Then it does what
Claude Desktop does: start the process over stdio, list the tools and call `respond`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.support.fake_providers import FakeProvider, Text
from tests.support.mcp_face import result_text
from tests.support.secrets import assert_no_secret

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ROOT = "/home/me/orq-sidecar"
EXAMPLE_VARIABLES = "/home/me/.config/orq-sidecar/mcp-variables.yaml"
WEATHER_KEY = "wk-desktop-" + "Pz7Lq2Xv9Rn4"


def readme_block() -> dict[str, Any]:
    """The JSON block that follows the README's **Claude Desktop** paragraph."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index("**Claude Desktop**") :]
    match = re.search(r"```json\n(.*?)```", after, re.DOTALL)
    assert match is not None, "no JSON block after **Claude Desktop**"
    block: dict[str, Any] = json.loads(match.group(1))
    return block


def localized(value: str, state: Path, variables: Path) -> str:
    """An example path of the block, as it is in this test."""
    return (
        value.replace(
            f"{EXAMPLE_ROOT}/.venv/bin/sidecar", str(Path(sys.executable).parent / "sidecar")
        )
        .replace(f"{EXAMPLE_ROOT}/.sidecar", str(state))
        .replace(EXAMPLE_ROOT, str(ROOT))
        .replace(EXAMPLE_VARIABLES, str(variables))
    )


async def test_the_readme_block_starts_a_face_whose_respond_runs_the_agent(
    tmp_path: Path, fake: FakeProvider
) -> None:
    server = readme_block()["mcpServers"]["orq-sidecar"]
    variables = tmp_path / "mcp-variables.yaml"
    variables.write_text(
        yaml.safe_dump({"WEATHER_API_KEY": {"secret": True, "value": WEATHER_KEY}})
    )
    variables.chmod(0o600)
    state = tmp_path / "state"
    command = localized(server["command"], state, variables)
    args = [localized(arg, state, variables) for arg in server["args"]]
    assert args[0] == "mcp"
    assert {"--manifests-dir", "--variables-file"} <= set(args)
    env = {**server["env"], "PATH": os.environ.get("PATH", ""), "OPENAI_BASE_URL": fake.base_url}
    key = server["env"]["OPENAI_API_KEY"]
    fake.reset()
    fake.reply(Text("Your total is 48.38 EUR."))

    parameters = StdioServerParameters(command=command, args=args, env=env, cwd=tmp_path)
    with (tmp_path / "desktop.log").open("a", encoding="utf-8") as log:
        async with Client(stdio_client(parameters, errlog=log)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            answer = await client.call_tool("respond", {"input": "2 x 19.99 with 21% VAT?"})

    assert "support-assistant" in tools["respond"].input_schema["properties"]["agent"]["enum"]
    assert {"invoice_total", "weather_current"} <= set(tools)
    assert result_text(answer) == "Your total is 48.38 EUR."
    sent = fake.requests[-1]
    assert sent.header("authorization") == f"Bearer {key}"
    assert sent.json["model"] == "gpt-4.1-mini"
    assert "support assistant of ACME" in sent.json["messages"][0]["content"]
    offered = {tool["function"]["name"] for tool in sent.json["tools"]}
    assert offered == {"current_date", "invoice_total", "weather_current", "triage_ticket"}
    logs = (tmp_path / "desktop.log").read_text(encoding="utf-8")
    for text in (answer.model_dump_json(), logs):
        assert_no_secret(text, key, WEATHER_KEY, where="desktop face")
