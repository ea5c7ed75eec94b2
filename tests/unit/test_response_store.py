"""The response store's writer on SQLite: records are written behind the answer, and the
close writes every record saved before it, those saved while a write ran included."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from sidecar.database.base import Params
from sidecar.database.sqlite import SqliteDatabase
from sidecar.llm.store import RESPONSES_SCHEMA, ResponseStore, StoredResponse


def _text(response_id: str) -> str:
    return ResponseStore.encode(StoredResponse({"id": response_id}, ()))


@pytest.mark.anyio
async def test_a_record_saved_while_a_write_runs_is_written_when_the_store_closes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "responses.sqlite3"
    writing, release = anyio.Event(), anyio.Event()
    async with SqliteDatabase(path, RESPONSES_SCHEMA) as database:
        unpatched = database.execute_many

        async def slow_write(sql: str, rows: Sequence[Params]) -> None:
            writing.set()
            await release.wait()  # released once the close has begun
            await unpatched(sql, rows)

        database.execute_many = slow_write  # type: ignore[method-assign]

        async def release_after_the_close_began() -> None:
            await anyio.sleep(0.2)
            release.set()

        async with anyio.create_task_group() as tasks, ResponseStore(database) as store:
            await store.save_text("resp_first", 1, _text("resp_first"))
            await writing.wait()  # the writer has taken it and writes it
            await store.save_text("resp_during", 2, _text("resp_during"))
            tasks.start_soon(release_after_the_close_began)
    async with (
        SqliteDatabase(path, RESPONSES_SCHEMA) as database,
        ResponseStore(database) as store,
    ):
        for response_id in ("resp_first", "resp_during"):
            found = await store.get(response_id)
            assert found is not None, f"{response_id} was lost at the close"
            assert found.response == {"id": response_id}
