"""The Dockerfile and the Kubernetes example (docs/kubernetes.yaml) say what the service
needs, and the image's entry command, with their environment, starts a service whose
probes pass and which stops cleanly on SIGTERM. (The command is run as the image would
run it, from this checkout's interpreter; `test_image.py` builds the image and runs it.)"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sidecar.registry.manifests import load_tool_manifests
from sidecar.settings import Settings
from tests.support.postgres import PostgresServer
from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import wait_until_answering
from tests.support.upstream import free_port

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "deploy-api-key-81f3a0"
ENCRYPTION_KEY = "deploy-encryption-key-5e2b7c41d9a0"


def _dockerfile() -> list[tuple[str, str]]:
    """The instructions of the Dockerfile's final stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    instructions: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            instructions = []  # a new stage
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _one(instructions: list[tuple[str, str]], keyword: str) -> str:
    found = [rest for name, rest in instructions if name == keyword]
    assert len(found) == 1, f"{keyword}: {found}"
    return found[0]


def _image_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, rest in instructions:
        if name == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _kubernetes() -> tuple[dict[str, Any], dict[str, Any]]:
    documents = list(yaml.safe_load_all((ROOT / "docs" / "kubernetes.yaml").read_text("utf-8")))
    kinds = {document["kind"]: document for document in documents}
    return kinds["ConfigMap"], kinds["Deployment"]


def _sidecar_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "sidecar")


def test_the_image_is_slim_non_root_and_starts_the_service() -> None:
    stage = _dockerfile()
    assert _one(stage, "FROM").startswith("python:3.11-slim")
    user, _, group = _one(stage, "USER").partition(":")
    assert user.isdigit()
    assert int(user) != 0
    assert group.isdigit()
    assert json.loads(_one(stage, "ENTRYPOINT")) == ["sidecar"]
    assert json.loads(_one(stage, "CMD")) == ["serve"]
    env = _image_env(stage)
    assert _one(stage, "EXPOSE") == env["SIDECAR_PORT"]
    assert f":{env['SIDECAR_PORT']}/healthz" in _one(stage, "HEALTHCHECK")
    settings = set(Settings.model_fields)
    for name in env:
        if name.startswith("SIDECAR_"):
            assert name.removeprefix("SIDECAR_").lower() in settings, name
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for package in ("sidecar", "tools", "sandbox", "manifests"):
        assert f"COPY {package} " in text
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_the_kubernetes_example_fits_the_image_and_the_service() -> None:
    config_map, deployment = _kubernetes()
    pod = deployment["spec"]["template"]["spec"]
    sidecar = _sidecar_container(deployment)
    stage = _dockerfile()
    env = {item["name"]: item for item in sidecar["env"]}
    settings = set(Settings.model_fields)
    for name in env:
        if name.startswith("SIDECAR_"):
            assert name.removeprefix("SIDECAR_").lower() in settings, name
    assert sidecar["args"] == json.loads(_one(stage, "CMD"))
    assert pod["securityContext"]["runAsUser"] == int(_one(stage, "USER").partition(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > float(env["SIDECAR_SHUTDOWN_GRACE"]["value"])
    secrets = (
        "SIDECAR_API_KEYS",
        "SIDECAR_ENCRYPTION_KEY",
        "SIDECAR_DATABASE_URL",
        "OPENAI_API_KEY",
    )
    for secret in secrets:
        assert "secretKeyRef" in env[secret]["valueFrom"], secret  # never a literal
    port = env["SIDECAR_PORT"]["value"]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        command = " ".join(sidecar[probe]["exec"]["command"])
        assert f"127.0.0.1:{port}{path}" in command
    mounts = {mount["name"]: mount["mountPath"] for mount in sidecar["volumeMounts"]}
    assert mounts["state"] == env["SIDECAR_STATE_DIR"]["value"]
    assert mounts["manifests"].startswith(env["SIDECAR_MANIFESTS_DIR"]["value"])
    assert config_map["data"], "the ConfigMap holds tool manifests"


def _run_entry_command(
    tmp_path: Path, database_url: str
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """The image's ENTRYPOINT and CMD with its ENV and the pod's, paths under `tmp_path`."""
    config_map, deployment = _kubernetes()
    stage = _dockerfile()
    tools = tmp_path / "manifests" / "tools"
    tools.mkdir(parents=True)
    for name, text in config_map["data"].items():
        (tools / name).write_text(text, encoding="utf-8")
    secrets = {"api-key": API_KEY, "encryption-key": ENCRYPTION_KEY, "database-url": database_url}
    env = _image_env(stage)
    for item in _sidecar_container(deployment)["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["valueFrom"]["secretKeyRef"]["key"] in secrets:
            env[item["name"]] = secrets[item["valueFrom"]["secretKeyRef"]["key"]]
    port = free_port()
    env |= {
        "SIDECAR_PORT": str(port),
        "SIDECAR_STATE_DIR": str(tmp_path / "state"),
        "SIDECAR_MANIFESTS_DIR": str(tmp_path / "manifests"),
        "SIDECAR_LOG_FORMAT": "json",
        "PATH": os.environ.get("PATH", ""),
    }
    entry = json.loads(_one(stage, "ENTRYPOINT")) + json.loads(_one(stage, "CMD"))
    executable = Path(sys.executable).with_name(entry[0])  # the console script pip installs
    log = tmp_path / "sidecar.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(executable), *entry[1:]], env=env, cwd=tmp_path, stdout=output, stderr=output
        )
    return process, f"http://127.0.0.1:{port}", log


def test_the_entry_command_with_the_pods_environment_serves_and_stops(
    tmp_path: Path, postgres_url: str, postgres_server: PostgresServer
) -> None:
    _, deployment = _kubernetes()
    sidecar = _sidecar_container(deployment)
    process, base_url, log = _run_entry_command(tmp_path, postgres_url)
    try:
        wait_until_answering(process, f"{base_url}/healthz", 30, lambda: log.read_text())
        wait_until_answering(process, f"{base_url}/readyz", 30, lambda: log.read_text())
        port = base_url.rsplit(":", 1)[1]
        probes = {}
        for probe in ("readinessProbe", "livenessProbe"):
            command = [
                sys.executable if part == "python" else part.replace(":8080/", f":{port}/")
                for part in sidecar[probe]["exec"]["command"]
            ]
            probes[probe] = subprocess.run(command, timeout=10, check=False).returncode
        ready = httpx.get(f"{base_url}/readyz", timeout=5).json()
        tools = httpx.get(
            f"{base_url}/v2/tools", headers={"authorization": f"Bearer {API_KEY}"}, timeout=5
        )
        unauthorized = httpx.get(f"{base_url}/v2/tools", timeout=5)
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=60)
    logs = log.read_text(encoding="utf-8")
    assert probes == {"readinessProbe": 0, "livenessProbe": 0}
    assert ready["status"] == "ready"
    assert ready["checks"]["store"] == {"ok": True, "backend": "postgresql"}
    assert set(ready["checks"]["sandbox"]["layers"]) >= {"rlimits", "seccomp"}
    assert tools.status_code == 200
    assert [tool["key"] for tool in tools.json()["data"]] == ["world_clock"]
    assert unauthorized.status_code == 401
    assert returncode == 0
    assert "shutdown.drained" in logs
    for text in (logs, tools.text, json.dumps(ready)):
        assert_no_secret(text, API_KEY)
        assert_no_secret(text, ENCRYPTION_KEY)
        assert_no_secret(text, postgres_server.password)


@pytest.mark.parametrize("name", ["current-time.yaml"])
def test_the_configmaps_tools_are_valid_manifests(tmp_path: Path, name: str) -> None:
    config_map, _ = _kubernetes()
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / name).write_text(config_map["data"][name], encoding="utf-8")
    loaded = load_tool_manifests(tmp_path)
    assert [tool.definition.key for tool in loaded] == ["world_clock"]
