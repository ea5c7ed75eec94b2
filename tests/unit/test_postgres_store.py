"""The stores on PostgreSQL as replicas use it: several pools on one database.

(`tests/unit/test_store.py` runs the tool store's own tests on both backends, two
stores on one database among them.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime

import anyio
import psycopg
import pytest
from cryptography.fernet import Fernet
from ulid import ULID

from sidecar.database.postgres import PostgresDatabase, describe_url
from sidecar.errors import StoreUnavailable
from sidecar.llm.store import RESPONSES_SCHEMA, ResponseStore
from sidecar.registry.agent_definitions import AgentDefinition, StoredAgent
from sidecar.registry.agent_store import AgentStore
from sidecar.registry.crypto import SecretBox
from sidecar.registry.store import REGISTRY_SCHEMA, KeyTaken, ToolStore
from tests.support.postgres import PostgresServer
from tests.support.secrets import assert_no_secret
from tests.unit.test_store import function_body, http_body, stored

pytestmark = pytest.mark.anyio

SCHEMAS = (REGISTRY_SCHEMA, RESPONSES_SCHEMA)
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@asynccontextmanager
async def replicas(url: str, count: int = 2) -> AsyncIterator[list[PostgresDatabase]]:
    """`count` databases on one URL, each with its own pool, as replicas have."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(PostgresDatabase(url, SCHEMAS, pool_size=4))
            for _ in range(count)
        ]


def agent(key: str) -> StoredAgent:
    definition = AgentDefinition.model_validate({"key": key, "model": "openai/gpt-4o-mini"})
    return StoredAgent(id=str(ULID()), definition=definition, created=NOW, updated=NOW)


async def test_two_replicas_creating_one_key_give_one_winner(postgres_url: str) -> None:
    async with replicas(postgres_url) as databases:
        tool_stores = [ToolStore(database) for database in databases]
        agent_stores = [AgentStore(database) for database in databases]
        for round_number in range(10):
            outcomes: list[str] = []

            async def create(store: ToolStore | AgentStore, key: str, outcomes: list[str]) -> None:
                try:
                    if isinstance(store, ToolStore):
                        await store.insert(stored(function_body(key=key)))
                    else:
                        await store.insert(agent(key))
                    outcomes.append("created")
                except KeyTaken:
                    outcomes.append("taken")

            stores: list[ToolStore | AgentStore] = [*tool_stores, *agent_stores]
            async with anyio.create_task_group() as group:
                for store in stores:
                    group.start_soon(create, store, f"key-{round_number}", outcomes)
            assert sorted(outcomes) == ["created", "created", "taken", "taken"]


async def test_a_response_saved_on_one_replica_is_read_on_another_at_once(
    postgres_url: str,
) -> None:
    async with (
        replicas(postgres_url) as (one, two),
        ResponseStore(one) as writer,
        ResponseStore(two) as reader,
    ):
        record = '{"response":{"id":"resp_1"},"history":[],"pending":[],"approvals":{}}'
        await writer.save_text("resp_1", 1_700_000_000, record)
        found = await reader.get("resp_1")
        assert found is not None
        assert found.response == {"id": "resp_1"}
        assert await reader.delete("resp_1") is True
        assert await writer.get("resp_1") is None


async def test_many_saves_at_once_are_each_written_before_they_return(
    postgres_url: str,
) -> None:
    async with replicas(postgres_url) as (one, two), ResponseStore(one) as writer:
        reader = ResponseStore(two)  # not opened: reads only, no writer of its own
        ids = [f"resp_{n}" for n in range(200)]

        async def save(response_id: str) -> None:
            body = f'{{"response":{{"id":"{response_id}"}},"history":[]}}'
            await writer.save_text(response_id, 1, body)
            assert await reader.get(response_id) is not None

        async with anyio.create_task_group() as group:
            for response_id in ids:
                group.start_soon(save, response_id)


async def test_replicas_starting_together_apply_each_migration_once(postgres_url: str) -> None:
    databases = [PostgresDatabase(postgres_url, SCHEMAS, pool_size=2) for _ in range(4)]
    applied: list[dict[str, tuple[int, int]]] = []

    async def start(database: PostgresDatabase) -> None:
        applied.append(await database.migrate())

    try:
        async with anyio.create_task_group() as group:
            for database in databases:
                group.start_soon(start, database)
    finally:
        for database in databases:
            await database.close()
    firsts = [a for a in applied if a["registry"][0] == 0]
    assert len(firsts) == 1, applied  # one replica migrated, the others found it done
    assert all(a == {"registry": (3, 3), "responses": (1, 1)} for a in applied if a not in firsts)
    with psycopg.connect(postgres_url) as conn:
        versions: dict[str, int] = dict(
            conn.execute("SELECT name, version FROM sidecar_schema").fetchall()
        )
    assert versions == {"registry": 3, "responses": 1}


async def test_a_database_written_by_a_newer_sidecar_is_refused(postgres_url: str) -> None:
    async with PostgresDatabase(postgres_url, SCHEMAS):
        pass
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE sidecar_schema SET version = 99 WHERE name = 'registry'")
    with pytest.raises(RuntimeError, match="registry schema version 99 is newer"):
        async with PostgresDatabase(postgres_url, SCHEMAS):
            pass


async def test_encrypted_header_values_are_not_in_the_database_in_plaintext(
    postgres_url: str,
) -> None:
    plaintext = "Bearer sk-live-plaintext-marker-7f3a"
    box = SecretBox(Fernet.generate_key())
    tool = stored(http_body(authorization=box.encrypt(plaintext)))
    async with PostgresDatabase(postgres_url, SCHEMAS) as database:
        store = ToolStore(database)
        await store.insert(tool)
        await store.replace(tool.model_copy(update={"version": 2}), expected_version=1)
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT body FROM tools UNION ALL SELECT body FROM tool_versions"
        ).fetchall()
    everything = "".join(str(row[0]) for row in rows)
    assert "enc:v1:" in everything
    assert_no_secret(everything, plaintext)


async def test_an_unreachable_server_is_a_clear_error_without_the_password(
    postgres_server: PostgresServer,
) -> None:
    password = "pw-unreachable-5e6f7a"
    url = f"postgresql://sidecar:{password}@127.0.0.1:1/nowhere"
    with pytest.raises(StoreUnavailable) as caught:
        async with PostgresDatabase(url, SCHEMAS, timeout=1):
            pass
    assert "127.0.0.1:1/nowhere" in caught.value.message
    assert_no_secret(caught.value.message, password)
    wrong = postgres_server.url(password=password)
    with pytest.raises(StoreUnavailable) as caught:
        async with PostgresDatabase(wrong, SCHEMAS, timeout=1):
            pass
    assert_no_secret(caught.value.message, password)
    assert describe_url(wrong) == f"postgresql://sidecar@127.0.0.1:{postgres_server.port}/postgres"


async def test_a_restarted_server_fails_calls_clearly_then_serves_them_again() -> None:
    server = PostgresServer()
    server.start()
    try:
        url = server.database()
        async with PostgresDatabase(url, SCHEMAS, pool_size=4, timeout=2) as database:
            tools, responses = ToolStore(database), ResponseStore(database)
            async with responses:
                tool = stored(function_body())
                await tools.insert(tool)
                server.stop()
                with pytest.raises(StoreUnavailable) as caught:
                    await tools.get(tool.id)
                assert_no_secret(caught.value.message, server.password)
                with pytest.raises(StoreUnavailable):
                    await tools.insert(stored(function_body(key="other")))
                with pytest.raises(StoreUnavailable):
                    await responses.save_text("resp_down", 1, '{"response":{},"history":[]}')
                server.start()
                # Every pooled connection died with the server: the first read after the
                # restart already succeeds, since a lost connection is tried once more.
                assert await tools.get(tool.id) == tool
                assert await responses.get("resp_down") is None  # refused, so not kept
                await tools.insert(stored(function_body(key="other")))
                await responses.save_text("resp_up", 1, '{"response":{},"history":[]}')
                assert await responses.get("resp_up") is not None
    finally:
        server.close()
