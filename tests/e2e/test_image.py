"""The container image itself: the Dockerfile built, both stages, by podman
(`tests/support/image.py` says how, on a machine that reaches no registry), its
configuration as a container engine reads it, and its entry command run as its user,
in its directory, with its environment: the service answers its probes, says which
sandbox layers it has there, and stops on SIGTERM with exit 0."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.image import build_image, podman, run_in_image
from tests.support.upstream import free_port

ROOT = Path(__file__).resolve().parents[2]
TAG = "localhost/orq-sidecar:test"
API_KEY = "image-api-key-" + "Vq7Lr2Mx9Tc4"


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    build_image(ROOT, TAG)
    yield TAG
    podman("rmi", "--force", TAG)
    podman("image", "prune", "--force")  # the build stage's image


def test_the_image_is_configured_as_the_dockerfile_says(image: str) -> None:
    inspected = podman("image", "inspect", image)
    assert inspected.returncode == 0, inspected.stderr
    (described,) = json.loads(inspected.stdout)
    config = described["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["sidecar"]
    assert config["Cmd"] == ["serve"]
    assert config["WorkingDir"] == "/var/lib/sidecar"
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["StopSignal"] == "SIGTERM"
    assert described["Healthcheck"]["Test"][:2] == ["CMD", "python"]
    env = dict(pair.split("=", 1) for pair in config["Env"])
    assert env["SIDECAR_HOST"] == "0.0.0.0"
    assert env["SIDECAR_MANIFESTS_DIR"] == "/etc/sidecar/manifests"


def test_the_entry_command_serves_as_its_user_and_stops_cleanly(image: str) -> None:
    port = free_port()
    # The image's ENV with the port moved off 8080 (the build shares this host's network),
    # and an API key given as a deployment would give it.
    script = f"""
id -u
SIDECAR_PORT={port} SIDECAR_API_KEYS={API_KEY} sidecar serve > /tmp/serve.log 2>&1 &
pid=$!
python - <<'PY'
import json, time, urllib.request
deadline = time.monotonic() + 90
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            print("READYZ " + json.dumps(json.load(answer)))
            break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
def execute(tool, arguments):
    request = urllib.request.Request(
        "http://127.0.0.1:{port}/v1/tools/execute",
        data=json.dumps({{"tool": tool, "arguments": arguments}}).encode(),
        headers={{"authorization": "Bearer {API_KEY}", "content-type": "application/json"}},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)
print("EXECUTED " + json.dumps(execute({{"type": "orq:current_date"}}, {{}})))
lines = [{{"unit_price": "19.99", "quantity": 3}}]
invoice = {{"type": "orq:code", "key": "invoice_total"}}
print("SANDBOXED " + json.dumps(execute(invoice, {{"lines": lines}})))
PY
kill -TERM $pid
code=0
wait $pid || code=$?
echo "EXIT $code"
echo "LOG"
cat /tmp/serve.log
"""
    output = run_in_image(image, script)
    lines = output.splitlines()
    assert "10001" in lines, output
    readyz = json.loads(next(line for line in lines if line.startswith("READYZ "))[7:])
    assert readyz["status"] == "ready", readyz
    executed = json.loads(next(line for line in lines if line.startswith("EXECUTED "))[9:])
    assert executed["status"] == "completed", executed
    # A manifest's code tool, run in the sandbox's confined process inside the image.
    sandboxed = json.loads(next(line for line in lines if line.startswith("SANDBOXED "))[10:])
    assert sandboxed["status"] == "completed", sandboxed
    assert sandboxed["result"]["result"] == {"net": "59.97", "vat": "12.59", "gross": "72.56"}
    assert "EXIT 0" in lines, output
    log = output[output.index("\nLOG\n") :]
    assert API_KEY not in log
    # The layers the sandbox has in a chroot-isolated step (docs/deployment.md says what
    # each needs in a container): all but its own network namespace.
    layers = readyz["checks"]["sandbox"]["layers"]
    held = {name for name, holds in layers.items() if holds}
    assert {"seccomp", "no_new_privs", "unprivileged_uid", "rlimits"} <= held, layers
