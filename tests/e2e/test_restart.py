"""The registry survives a restart; shutdown is graceful."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import run_sidecar
from tests.support.upstream import serve_recording_upstream

HEADER_SECRET = "restart-survivor-secret-123"


def test_registry_and_encrypted_values_survive_a_restart(tmp_path: Path) -> None:
    with serve_recording_upstream() as upstream:
        tool = {
            "type": "http",
            "key": "survivor",
            "description": "Echo",
            "http": {
                "blueprint": {
                    "url": f"{upstream.base_url}/echo",
                    "headers": {"X-Api-Key": {"value": HEADER_SECRET, "encrypted": True}},
                }
            },
        }
        with run_sidecar(tmp_path) as first, httpx.Client(base_url=first.base_url) as client:
            created = client.post("/v2/tools", json=tool).json()
        assert first.process.returncode == 0
        assert "services.closed" in first.logs(), "SIGTERM should close every resource"

        with run_sidecar(tmp_path) as second, httpx.Client(base_url=second.base_url) as client:
            by_key = client.get("/v2/tools/survivor")
            by_id = client.get(f"/v2/tools/{created['_id']}")
            executed = client.post("/v1/tools/execute", json={"tool": "survivor"})

        assert by_key.status_code == 200
        assert by_id.json()["_id"] == created["_id"]
        assert executed.json()["status"] == "completed", executed.text
        assert upstream.requests[-1].headers["x-api-key"] == HEADER_SECRET
        key_file = tmp_path / "state" / "encryption.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        raw = b"".join(path.read_bytes() for path in (tmp_path / "state").glob("registry.sqlite3*"))
        assert HEADER_SECRET.encode() not in raw
        for text in (by_key.text, executed.text, first.logs(), second.logs()):
            assert_no_secret(text, HEADER_SECRET)
