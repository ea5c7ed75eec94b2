"""Replicas on one PostgreSQL database: two real `sidecar serve` processes that share
nothing else. What one registers the other runs at once, a response made on one is
continued on the other, and two creating one key give one success and one 409."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet

from tests.support.fake_providers import FakeProvider, Text
from tests.support.postgres import PostgresServer
from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import RunningSidecar, run_sidecar
from tests.support.upstream import RecordingUpstream

SEALED_HEADER = "sealed-header-" + "Vb8Nq3Lw6Ty1"
CALL_SECRET = "call-secret-" + "Pz5Hm2Kc9Rd4"
PROVIDER_KEY = "sk-chat-" + "Jf7Ws3Xq8Nb2"


@pytest.fixture(scope="module")
def shared_url(postgres_server: PostgresServer) -> Iterator[str]:
    url = postgres_server.database()
    yield url
    postgres_server.drop(url)


@pytest.fixture(scope="module")
def replica_env(
    shared_url: str, fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    providers = tmp_path_factory.mktemp("providers") / "providers.yaml"
    entry = {"name": "chat", "wire": "openai-chat", "base_url": fake.base_url,
             "api_key_env": "CHAT_KEY"}  # fmt: skip
    providers.write_text(json.dumps({"providers": [entry]}), "utf-8")
    return {
        "SIDECAR_DATABASE_URL": shared_url,
        "SIDECAR_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "SIDECAR_PROVIDERS_FILE": str(providers),
        "SIDECAR_SANDBOX_ENABLED": "false",
        "CHAT_KEY": PROVIDER_KEY,
    }


@pytest.fixture(scope="module")
def replicas(
    replica_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningSidecar, RunningSidecar]]:
    with (
        run_sidecar(tmp_path_factory.mktemp("replica-one"), replica_env) as one,
        run_sidecar(tmp_path_factory.mktemp("replica-two"), replica_env) as two,
    ):
        yield one, two


def test_a_tool_registered_on_one_replica_runs_on_the_other_at_once(
    replicas: tuple[RunningSidecar, RunningSidecar],
    upstream: RecordingUpstream,
    shared_url: str,
    postgres_server: PostgresServer,
) -> None:
    one, two = replicas
    tool = {
        "type": "http",
        "key": "replica_echo",
        "description": "Echo",
        "http": {
            "blueprint": {
                "url": upstream.base_url + "/echo?token={{TOKEN}}",
                "method": "GET",
                "headers": {"X-Sealed": {"value": SEALED_HEADER, "encrypted": True}},
            },
            "arguments": {},
        },
    }
    created = httpx.post(f"{one.base_url}/v2/tools", json=tool, timeout=30)
    assert created.status_code == 200, created.text
    call = {
        "tool": {"type": "orq:http", "tool_id": created.json()["_id"]},
        "arguments": "{}",
        "variables": {"TOKEN": {"value": CALL_SECRET, "secret": True}},
    }
    executed = httpx.post(f"{two.base_url}/v1/tools/execute", json=call, timeout=30)
    assert executed.status_code == 200, executed.text
    assert executed.json()["status"] == "completed", executed.text
    received = upstream.requests[-1]
    assert received.headers["x-sealed"] == SEALED_HEADER
    assert CALL_SECRET in received.query

    updated = httpx.patch(
        f"{two.base_url}/v2/tools/replica_echo", json={"description": "Echo, changed"}
    )
    assert updated.status_code == 200, updated.text
    seen = httpx.get(f"{one.base_url}/v2/tools/replica_echo").json()
    assert seen["description"] == "Echo, changed"

    with psycopg.connect(shared_url) as conn:
        rows = conn.execute(
            "SELECT body FROM tools UNION ALL SELECT body FROM tool_versions"
            " UNION ALL SELECT body FROM responses"
        ).fetchall()
    stored = "".join(str(row[0]) for row in rows)
    for text in (executed.text, seen.__repr__(), stored, one.logs(), two.logs()):
        assert_no_secret(text, SEALED_HEADER, CALL_SECRET, postgres_server.password)


def test_a_response_made_on_one_replica_is_continued_on_the_other(
    replicas: tuple[RunningSidecar, RunningSidecar], fake: FakeProvider
) -> None:
    one, two = replicas
    fake.reset()
    fake.reply(Text("Lima is the capital of Peru."), Text("About ten million people."))
    first = httpx.post(
        f"{one.base_url}/v1/responses",
        json={"model": "chat/m", "input": "What is the capital of Peru?"},
        timeout=30,
    )
    assert first.status_code == 200, first.text
    response_id = first.json()["id"]
    read = httpx.get(f"{two.base_url}/v1/responses/{response_id}", timeout=30)
    assert read.status_code == 200, read.text
    assert read.json()["output_text"] == "Lima is the capital of Peru."
    second = httpx.post(
        f"{two.base_url}/v1/responses",
        json={
            "model": "chat/m",
            "input": "How many live there?",
            "previous_response_id": response_id,
        },
        timeout=30,
    )
    assert second.status_code == 200, second.text
    assert second.json()["output_text"] == "About ten million people."
    sent = fake.last().json["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == [
        "What is the capital of Peru?",
        "How many live there?",
    ]
    assert "Lima is the capital of Peru." in json.dumps(sent)
    for text in (first.text, second.text, one.logs(), two.logs()):
        assert_no_secret(text, PROVIDER_KEY)


def test_two_replicas_creating_one_key_give_one_success_and_one_conflict(
    replicas: tuple[RunningSidecar, RunningSidecar],
) -> None:
    one, two = replicas

    def create(base_url: str, path: str, body: Mapping[str, object]) -> int:
        return httpx.post(f"{base_url}{path}", json=body, timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        for number in range(8):
            tool = {"type": "function", "key": f"race_tool_{number}",
                    "function": {"name": "race", "parameters": {"type": "object"}}}  # fmt: skip
            agent = {"key": f"race-agent-{number}", "model": "chat/m", "path": "Default"}
            tools = [pool.submit(create, r.base_url, "/v2/tools", tool) for r in (one, two)]
            agents = [pool.submit(create, r.base_url, "/v2/agents", agent) for r in (one, two)]
            assert sorted(f.result() for f in tools) == [200, 409]
            assert sorted(f.result() for f in agents) == [201, 409]


def test_readiness_names_the_shared_database_and_migrate_reports_it_current(
    replicas: tuple[RunningSidecar, RunningSidecar],
    replica_env: dict[str, str],
    postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    one, _ = replicas
    ready = httpx.get(f"{one.base_url}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["store"] == {"ok": True, "backend": "postgresql"}
    migrated = subprocess.run(
        [sys.executable, "-m", "sidecar", "db", "migrate", "--state-dir", str(tmp_path)],
        env={"PATH": "/usr/bin:/bin", **replica_env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    lines = [json.loads(line) for line in migrated.stdout.splitlines()]
    assert [(line["schema"], line["from"], line["to"]) for line in lines] == [
        ("registry", 3, 3),
        ("responses", 1, 1),
    ]
    assert lines[0]["database"].startswith("postgresql://sidecar@127.0.0.1:")
    assert_no_secret(migrated.stdout + migrated.stderr, postgres_server.password)
    assert not list(tmp_path.iterdir()), "a shared database writes nothing in the state dir"
