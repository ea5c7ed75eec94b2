"""ToolStore on both backends: a SQLite file and a PostgreSQL database."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from ulid import ULID

from sidecar.database.postgres import PostgresDatabase
from sidecar.database.sqlite import SqliteDatabase
from sidecar.errors import StoreUnavailable
from sidecar.registry.crypto import SecretBox
from sidecar.registry.definitions import StoredTool, definition_adapter
from sidecar.registry.store import REGISTRY_SCHEMA, KeyTaken, ToolStore, VersionConflict

Opener = Callable[[], SqliteDatabase | PostgresDatabase]

pytestmark = pytest.mark.anyio

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def http_body(key: str = "weather", authorization: Any = "Bearer xyz") -> dict[str, Any]:
    header = {"value": authorization, "encrypted": True}
    return {
        "type": "http",
        "key": key,
        "description": "Weather",
        "http": {
            "blueprint": {
                "url": "https://api.example.com/w/{{city}}",
                "method": "GET",
                "headers": {"Authorization": header},
            },
            "arguments": {"city": {"type": "string", "description": "City"}},
        },
    }


def function_body(key: str = "lookup") -> dict[str, Any]:
    return {
        "type": "function",
        "key": key,
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }


def stored(body: dict[str, Any], tool_id: str | None = None, version: int = 1) -> StoredTool:
    return StoredTool(
        id=tool_id or str(ULID()),
        definition=definition_adapter.validate_python(body),
        created=NOW,
        updated=NOW,
        version=version,
    )


def ordered_ids(count: int) -> list[str]:
    """Ids oldest first, whatever millisecond they were made in."""
    return sorted(str(ULID()) for _ in range(count))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "registry.sqlite3"


@pytest.fixture(params=["sqlite", "postgresql"])
def databases(request: pytest.FixtureRequest, db_path: Path) -> Opener:
    """Opens the test's one database (the same each time) on the backend under test."""
    if request.param == "sqlite":
        return lambda: SqliteDatabase(db_path, REGISTRY_SCHEMA)
    url: str = request.getfixturevalue("postgres_url")
    return lambda: PostgresDatabase(url, (REGISTRY_SCHEMA,))


@asynccontextmanager
async def open_store(databases: Opener) -> AsyncIterator[ToolStore]:
    async with databases() as database:
        yield ToolStore(database)


async def test_inserted_tool_is_found_by_id_and_key(databases: Opener) -> None:
    tool = stored(http_body())
    async with open_store(databases) as store:
        await store.insert(tool)
        assert await store.get(tool.id) == tool
        assert await store.get_by_key("weather") == tool
        assert await store.get(str(ULID())) is None
        assert await store.get_by_key("nope") is None


async def test_function_tool_round_trips(databases: Opener) -> None:
    tool = stored(function_body())
    async with open_store(databases) as store:
        await store.insert(tool)
        found = await store.get(tool.id)
    assert found == tool
    assert found.source == "api"


async def test_state_directory_is_created_owner_only(db_path: Path) -> None:
    async with open_store(lambda: SqliteDatabase(db_path, REGISTRY_SCHEMA)) as store:
        await store.ping()
    assert stat.S_IMODE(db_path.parent.stat().st_mode) & 0o077 == 0


async def test_duplicate_key_is_refused(databases: Opener) -> None:
    async with open_store(databases) as store:
        await store.insert(stored(http_body()))
        with pytest.raises(KeyTaken) as caught:
            await store.insert(stored(function_body(key="weather")))
        assert caught.value.key == "weather"
        assert len(await store.all()) == 1


async def test_replace_bumps_a_tool_at_the_expected_version(databases: Opener) -> None:
    tool = stored(http_body())
    later = NOW + timedelta(minutes=5)
    changed = tool.model_copy(
        update={"definition": stored(http_body(key="forecast")).definition, "version": 2}
    ).model_copy(update={"updated": later})
    async with open_store(databases) as store:
        await store.insert(tool)
        await store.replace(changed, expected_version=1)
        assert await store.get(tool.id) == changed
        assert await store.get_by_key("weather") is None
        assert (await store.get_by_key("forecast")) == changed


async def test_replace_with_a_stale_version_conflicts(databases: Opener) -> None:
    tool = stored(http_body())
    async with open_store(databases) as store:
        await store.insert(tool)
        await store.replace(tool.model_copy(update={"version": 2}), expected_version=1)
        with pytest.raises(VersionConflict):
            await store.replace(tool.model_copy(update={"version": 2}), expected_version=1)
        with pytest.raises(VersionConflict):
            await store.replace(stored(function_body(), version=2), expected_version=1)
        assert (await store.get(tool.id)) == tool.model_copy(update={"version": 2})


async def test_replace_onto_a_taken_key_is_refused(databases: Opener) -> None:
    weather, lookup = stored(http_body()), stored(function_body())
    renamed = lookup.model_copy(
        update={"definition": stored(function_body(key="weather")).definition, "version": 2}
    )
    async with open_store(databases) as store:
        await store.insert(weather)
        await store.insert(lookup)
        with pytest.raises(KeyTaken):
            await store.replace(renamed, expected_version=1)
        assert await store.get(lookup.id) == lookup


async def test_delete_removes_a_tool_once(databases: Opener) -> None:
    tool = stored(http_body())
    async with open_store(databases) as store:
        await store.insert(tool)
        assert await store.delete(tool.id) is True
        assert await store.delete(tool.id) is False
        assert await store.get(tool.id) is None
        await store.insert(stored(http_body()))  # the key is free again


async def test_pages_go_newest_first_in_both_directions(databases: Opener) -> None:
    ids = ordered_ids(5)
    newest_first = list(reversed(ids))
    async with open_store(databases) as store:
        for number, tool_id in enumerate(ids):
            await store.insert(stored(function_body(key=f"tool{number}"), tool_id=tool_id))

        first, more = await store.page(limit=2)
        assert ([t.id for t in first], more) == (newest_first[:2], True)
        second, more = await store.page(limit=2, starting_after=first[-1].id)
        assert ([t.id for t in second], more) == (newest_first[2:4], True)
        last, more = await store.page(limit=2, starting_after=second[-1].id)
        assert ([t.id for t in last], more) == (newest_first[4:], False)

        back, more = await store.page(limit=2, ending_before=last[0].id)
        assert ([t.id for t in back], more) == (newest_first[2:4], True)
        front, more = await store.page(limit=2, ending_before=back[0].id)
        assert ([t.id for t in front], more) == (newest_first[:2], False)

        everything, more = await store.page(limit=10)
        assert ([t.id for t in everything], more) == (newest_first, False)
        assert [t.id for t in await store.all()] == newest_first


async def test_page_refuses_two_cursors_or_no_room(databases: Opener) -> None:
    tool_id = str(ULID())
    async with open_store(databases) as store:
        with pytest.raises(ValueError, match="combined"):
            await store.page(limit=1, starting_after=tool_id, ending_before=tool_id)
        with pytest.raises(ValueError, match="limit"):
            await store.page(limit=0)


async def test_tools_persist_across_close_and_reopen(databases: Opener) -> None:
    tool = stored(http_body())
    async with open_store(databases) as store:
        await store.insert(tool)
    async with open_store(databases) as store:
        assert await store.get(tool.id) == tool
        await store.ping()


async def test_a_closed_store_refuses_work(databases: Opener) -> None:
    database = databases()
    await database.open()
    await database.close()
    await database.close()
    with pytest.raises((RuntimeError, StoreUnavailable)):
        await ToolStore(database).ping()


async def test_encrypted_header_value_is_not_on_disk_in_plaintext(db_path: Path) -> None:
    plaintext = "Bearer sk-live-plaintext-marker-7f3a"
    box = SecretBox(Fernet.generate_key())
    tool = stored(http_body(authorization=box.encrypt(plaintext)))
    async with open_store(lambda: SqliteDatabase(db_path, REGISTRY_SCHEMA)) as store:
        await store.insert(tool)
        await store.replace(tool.model_copy(update={"version": 2}), expected_version=1)
        found = await store.get(tool.id)
    assert found == tool.model_copy(update={"version": 2})

    files = [path for path in db_path.parent.iterdir() if path.name.startswith(db_path.name)]
    raw = b"".join(path.read_bytes() for path in files)
    assert b"enc:v1:" in raw
    assert plaintext.encode() not in raw
    assert b"sk-live-plaintext-marker" not in raw


async def test_a_lookup_sees_what_another_store_on_the_same_database_wrote(
    databases: Opener,
) -> None:
    """Two stores on one database, as two processes (or replicas) have."""
    async with open_store(databases) as writer, open_store(databases) as reader:
        assert await reader.get_by_key("lookup") is None
        tool = stored(function_body())
        await writer.insert(tool)
        assert await reader.get_by_key("lookup") == tool, "a remembered miss is forgotten"
        assert await reader.get(tool.id) == tool
        changed = tool.model_copy(update={"version": 2})
        await writer.replace(changed, expected_version=1)
        found = await reader.get_by_key("lookup")
        assert found is not None
        assert found.version == 2
        assert [version.tool.version for version in await reader.versions(tool.id)] == [2, 1]
        await writer.delete(tool.id)
        assert await reader.get(tool.id) is None


async def test_a_lookup_sees_the_stores_own_writes(tmp_path: Path) -> None:
    async with open_store(
        lambda: SqliteDatabase(tmp_path / "own.sqlite3", REGISTRY_SCHEMA)
    ) as store:
        tool = stored(function_body())
        assert await store.get(tool.id) is None
        await store.insert(tool)
        assert await store.get(tool.id) == tool
        await store.delete(tool.id)
        assert await store.get(tool.id) is None
