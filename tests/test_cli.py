"""The `sidecar` command: listing and calling tools from the command line."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sidecar.cli import main
from tests.support.mcp_process import stdio_command
from tests.support.secrets import assert_no_secret
from tests.support.upstream import RecordingUpstream, serve_recording_upstream

SECRET = "cli-secret-token-0099"


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    with serve_recording_upstream() as running:
        yield running


@pytest.fixture
def workdir(tmp_path: Path, upstream: RecordingUpstream, monkeypatch: pytest.MonkeyPatch) -> Path:
    tools = tmp_path / "manifests" / "tools"
    tools.mkdir(parents=True)
    manifest = {
        "type": "http",
        "key": "echo",
        "description": "Echo the request",
        "http": {
            "blueprint": {
                "url": upstream.base_url + "/echo/{{word}}",
                "headers": {"Authorization": "Bearer {{TOKEN}}"},
            },
            "arguments": {"word": {"type": "string", "description": "a word"}},
        },
    }
    (tools / "echo.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    monkeypatch.setenv("SIDECAR_OUTBOUND_ALLOW", "127.0.0.1")
    monkeypatch.setenv("SIDECAR_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SIDECAR_MANIFESTS_DIR", str(tmp_path / "manifests"))
    return tmp_path


def test_tools_list_prints_platform_and_manifest_tools(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "list"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"type": "orq:current_date", "name": "current_date"} in lines
    echo = next(line for line in lines if line.get("key") == "echo")
    assert echo["source"] == "manifest"
    assert echo["_id"].startswith("tool_")


def test_tools_call_prints_the_redacted_outcome(
    workdir: Path, upstream: RecordingUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["tools", "call", "echo", "--arg", "word=hello", "--secret", f"TOKEN={SECRET}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    outcome = json.loads(captured.out)
    assert outcome["status"] == "completed"
    assert outcome["result"]["body"]["path"] == "/echo/hello"
    assert outcome["result"]["body"]["headers"]["authorization"] == "Bearer ***"
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    assert_no_secret(captured.out + captured.err, SECRET, where="CLI output")


def test_tools_call_of_a_platform_tool_with_json_arguments(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "call", "current_date", "--arg", "timezone=Asia/Tokyo"]) == 0
    result = json.loads(capsys.readouterr().out)["result"]
    assert result["timezone"] == "Asia/Tokyo"
    assert result["localDate"].endswith("+09:00")


def test_tools_call_failure_exits_non_zero(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "call", "current_date", "--arg", "timezone=Nowhere/Land"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "invalid_arguments"


def test_unknown_tool_is_reported_on_stderr(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "call", "no-such-tool"]) == 1
    assert "tool_not_found" in capsys.readouterr().err


def test_malformed_pair_names_the_flag(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "call", "current_date", "--arg", "novalue"]) == 1
    assert "--arg" in capsys.readouterr().err


def test_a_tool_of_a_manifest_mcp_server_is_called_by_name(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command, args = stdio_command()
    server = {
        "type": "mcp",
        "key": "local",
        "description": "The test MCP server over stdio",
        "mcp": {"connection_type": "stdio", "command": command, "args": args},
    }
    (workdir / "manifests" / "tools" / "local.yaml").write_text(yaml.safe_dump(server))
    code = main(["tools", "call", "local", "--mcp-tool", "add", "--arg", "a=2", "--arg", "b=40"])
    answer = json.loads(capsys.readouterr().out)
    assert code == 0, answer
    assert answer["result"]["structured_content"] == {"result": 42}


def test_db_migrate_brings_the_sqlite_files_up_to_date_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"

    def migrate() -> list[tuple[str, int, int]]:
        assert main(["db", "migrate", "--state-dir", str(state)]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        return [(line["schema"], line["from"], line["to"]) for line in lines]

    assert migrate() == [("registry", 0, 3), ("responses", 0, 1)]
    assert migrate() == [("registry", 3, 3), ("responses", 1, 1)]
    assert sorted(path.name for path in state.glob("*.sqlite3")) == [
        "registry.sqlite3",
        "responses.sqlite3",
    ]


def test_db_migrate_refuses_a_database_of_a_newer_sidecar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert main(["db", "migrate", "--state-dir", str(state)]) == 0
    with sqlite3.connect(state / "registry.sqlite3") as conn:
        conn.execute("PRAGMA user_version = 9")
    assert main(["db", "migrate", "--state-dir", str(state)]) == 1
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["code"] == "schema_too_new"
    assert "registry schema version 9 is newer than this sidecar knows (3)" in error["message"]


def test_db_migrate_against_an_unreachable_postgresql_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "pw-migrate-" + "Tq6Lm1Zx"
    monkeypatch.setenv("SIDECAR_DATABASE_URL", f"postgresql://u:{password}@127.0.0.1:1/db")
    monkeypatch.setenv("SIDECAR_ENCRYPTION_KEY", "a-key")
    monkeypatch.setenv("SIDECAR_DATABASE_TIMEOUT", "1")
    assert main(["db", "migrate", "--state-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    error = json.loads(captured.err.splitlines()[-1])["error"]  # after the pool's warnings
    assert error["code"] == "store_unavailable"
    assert "postgresql://u@127.0.0.1:1/db" in error["message"]
    assert_no_secret(captured.out + captured.err, password)
