"""The manifests shipped in `manifests/` load, and `sidecar manifests check` reports them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from sidecar.cli import main
from sidecar.registry.agent_definitions import PLATFORM_TOOL_TYPES
from sidecar.registry.crypto import SecretBox
from sidecar.registry.factory import HttpLimits, ToolFactory
from sidecar.registry.manifests import load_agent_manifests, load_tool_manifests, manifest_files

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
TOOL_KINDS = {"http", "code", "function", "json_schema", "mcp"}


def test_every_shipped_manifest_loads() -> None:
    files = manifest_files(MANIFESTS)
    tools = load_tool_manifests(MANIFESTS)
    assert files, "manifests/tools holds no manifest"
    assert {tool.definition.type for tool in tools} >= TOOL_KINDS
    assert all(tool.source == "manifest" for tool in tools)


@pytest.mark.parametrize("path", manifest_files(MANIFESTS), ids=lambda path: path.name)
def test_each_shipped_file_defines_at_least_one_tool(path: Path, tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / path.name).write_bytes(path.read_bytes())
    assert load_tool_manifests(tmp_path)


def test_every_shipped_tool_builds_with_an_object_schema_for_the_model() -> None:
    factory = ToolFactory(SecretBox(Fernet.generate_key()), HttpLimits())
    for stored in load_tool_manifests(MANIFESTS):
        if stored.definition.type == "mcp":
            continue  # a server: its tools are listed from the server (tests/api/test_mcp_tools.py)
        definition = factory.build(stored.definition).tool.definition
        assert definition.parameters.get("type") == "object", stored.definition.key
        assert definition.description, stored.definition.key


def test_manifests_check_prints_each_key_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["manifests", "check", "--manifests-dir", str(MANIFESTS)])
    out = capsys.readouterr().out
    assert code == 0
    for stored in load_tool_manifests(MANIFESTS):
        assert stored.definition.key in out
        assert stored.tool_id in out


WEATHER = """\
type: http
key: weather
http:
  blueprint:
    url: https://api.weather.example/v1/current/{{city}}
    method: %s
  arguments:
    city: {type: string, description: City name}
"""

BROKEN = [
    pytest.param("broken.yaml", WEATHER % "FETCH", "http.blueprint.method", id="bad-method"),
    pytest.param(
        "broken.yml",
        WEATHER.replace("key: weather", "key: 9weather") % "GET",
        "key",
        id="bad-key",
    ),
    pytest.param(
        "broken.yaml",
        WEATHER.replace("type: string", "type: date") % "GET",
        "http.arguments.city.type",
        id="bad-argument-type",
    ),
    pytest.param(
        "broken.yaml",
        "tools:\n"
        "  - {type: function, key: ok, function: {name: ok}}\n"
        "  - {type: function, key: second, function: {name: 'has spaces'}}\n",
        "[1]: function.name",
        id="second-entry-of-a-list",
    ),
    pytest.param(
        "broken.json",
        json.dumps({"type": "function", "key": "f", "function": {"name": "f", "extra": 1}}),
        "function.extra",
        id="json-unknown-field",
    ),
]


@pytest.mark.parametrize(("name", "text", "field"), BROKEN)
def test_a_broken_manifest_fails_the_check_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, field: str
) -> None:
    tools = tmp_path / "manifests" / "tools"
    tools.mkdir(parents=True)
    (tools / "fine.yaml").write_text(
        "type: function\nkey: fine\nfunction: {name: fine}\n", encoding="utf-8"
    )
    broken = tools / name
    broken.write_text(text, encoding="utf-8")

    code = main(["manifests", "check", "--manifests-dir", str(tmp_path / "manifests")])

    captured = capsys.readouterr()
    assert code != 0
    error = json.loads(captured.err)["error"]
    assert error["code"] == "invalid_tool_definition"
    assert str(broken) in error["message"]
    assert field in error["message"]
    assert "ok  " not in captured.out


def test_a_key_defined_twice_names_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("a.yaml", "b.yaml"):
        (tools / name).write_text(
            "type: function\nkey: twice\nfunction: {name: twice}\n", encoding="utf-8"
        )

    code = main(["manifests", "check", "--manifests-dir", str(tmp_path)])

    message = json.loads(capsys.readouterr().err)["error"]["message"]
    assert code != 0
    assert str(tools / "a.yaml") in message
    assert str(tools / "b.yaml") in message
    assert "twice" in message


def test_manifests_check_compiles_code_tools_in_the_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "broken_code.yaml").write_text(
        "type: code\nkey: broken_code\ncode_tool:\n  code: |\n    x = 1\n    y = (\n",
        encoding="utf-8",
    )
    assert main(["manifests", "check", "--manifests-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL code" in out
    assert "broken_code" in out
    assert "line" in out


def test_the_shipped_code_tool_runs_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = '[{"unit_price": "19.99", "quantity": 3}, {"unit_price": "5.00", "quantity": 1}]'
    code = main(
        [
            "tools", "call", "invoice_total",
            "--arg", f"lines={lines}",
            "--manifests-dir", str(MANIFESTS),
            "--state-dir", str(tmp_path / "state"),
        ]
    )  # fmt: skip
    answer = json.loads(capsys.readouterr().out)
    assert code == 0, answer
    assert answer["result"]["result"] == {"net": "64.97", "vat": "13.64", "gross": "78.61"}


def test_a_key_written_twice_in_a_manifest_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "twice.yaml").write_text(
        "type: function\nkey: first\nkey: second\nfunction: {name: f}\n", encoding="utf-8"
    )
    assert main(["manifests", "check", "--manifests-dir", str(tmp_path)]) != 0
    assert "appears twice" in capsys.readouterr().err


def test_the_shipped_agents_load_and_name_only_shipped_tools() -> None:
    agents = load_agent_manifests(MANIFESTS)
    assert agents, "manifests/agents holds no agent"
    shipped = {tool.definition.key: tool.definition.type for tool in load_tool_manifests(MANIFESTS)}
    for agent in agents:
        assert agent.source == "manifest"
        for tool in agent.definition.settings.tools:
            if tool.type not in PLATFORM_TOOL_TYPES:
                assert shipped.get(tool.ident) == tool.type, (agent.definition.key, tool.ident)


def test_manifests_check_lists_the_agents(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifests", "check", "--manifests-dir", str(MANIFESTS)]) == 0
    out = capsys.readouterr().out
    for agent in load_agent_manifests(MANIFESTS):
        assert f"agent       {agent.definition.key}  ({agent.agent_id})" in out
    assert "note:" not in out


BROKEN_AGENTS = [
    ("model.yml", "key: a\nmodel: gpt\n", "model.id"),
    ("key.yaml", "key: 1a\nmodel: openai/m\n", "key"),
    (
        "tool.yaml",
        "key: a\nmodel: openai/m\nsettings: {tools: [{type: http}]}\n",
        "settings.tools.0",
    ),
    ("kb.yaml", "key: a\nmodel: openai/m\nknowledge_bases: [{id: x}]\n", "knowledge_bases"),
]


@pytest.mark.parametrize(("name", "text", "field"), BROKEN_AGENTS)
def test_a_broken_agent_manifest_fails_the_check_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, field: str
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    broken = agents / name
    broken.write_text(text, encoding="utf-8")

    code = main(["manifests", "check", "--manifests-dir", str(tmp_path)])

    error = json.loads(capsys.readouterr().err)["error"]
    assert code != 0
    assert str(broken) in error["message"]
    assert field in error["message"]


def test_an_agent_naming_an_unshipped_tool_is_noted_not_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "a.yaml").write_text(
        "agents:\n"
        "  - key: a\n    model: openai/m\n    settings: {tools: [{type: http, key: later}]}\n"
        "  - key: b\n    model: openai/m\n",
        encoding="utf-8",
    )
    assert main(["manifests", "check", "--manifests-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "note: http tool 'later' is not in the manifests" in out
    assert "2 agents in 1 files" in out
