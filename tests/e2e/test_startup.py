"""A service that cannot start says why, in one line, and exits non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _serve(workdir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--port", "0"],
        env={**os.environ, "SIDECAR_STATE_DIR": str(workdir / "state"), **env},
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_manifest_stops_the_start_naming_file_and_field(tmp_path: Path) -> None:
    tools = tmp_path / "manifests" / "tools"
    tools.mkdir(parents=True)
    (tools / "broken.yaml").write_text(
        "type: http\nkey: broken\nhttp:\n  blueprint:\n"
        "    url: https://x.example\n    method: TRACE\n",
        encoding="utf-8",
    )
    finished = _serve(tmp_path)
    assert finished.returncode == 2
    assert "cannot start" in finished.stderr
    assert "broken.yaml" in finished.stderr
    assert "http.blueprint.method" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_an_invalid_outbound_allow_entry_is_named(tmp_path: Path) -> None:
    finished = _serve(tmp_path, SIDECAR_OUTBOUND_ALLOW="127.0.0.1,not a host/99")
    assert finished.returncode == 2
    assert "not a host/99" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_a_group_readable_key_file_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    key = state / "encryption.key"
    key.write_text("x" * 44, encoding="utf-8")
    key.chmod(0o644)
    finished = _serve(tmp_path)
    assert finished.returncode == 2
    assert "encryption.key" in finished.stderr
    assert "x" * 44 not in finished.stderr + finished.stdout


@pytest.mark.parametrize("command", ["serve", "mcp"])
def test_a_bad_mcp_variables_file_stops_the_start_in_one_line(tmp_path: Path, command: str) -> None:
    secret = "never-shown-secret-4410"
    variables = tmp_path / "mcp-variables.yaml"
    variables.write_text(f"TOKEN: {{secret: true, value: {secret}}}\nTOKEN: twice\n", "utf-8")
    finished = subprocess.run(
        [sys.executable, "-m", "sidecar", command],
        env={
            **os.environ,
            "SIDECAR_STATE_DIR": str(tmp_path / "state"),
            "SIDECAR_PORT": "0",
            "SIDECAR_MCP_VARIABLES_FILE": str(variables),
        },
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert finished.stdout == ""
    lines = finished.stderr.splitlines()
    assert len(lines) == 1, finished.stderr
    assert lines[0].startswith(f"sidecar: cannot start: {variables}: ")
    assert "key 'TOKEN' appears twice" in lines[0]
    assert secret not in finished.stderr
