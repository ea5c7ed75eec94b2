"""The stores on PostgreSQL against SQLite (the embedded default), in the same run.

- registry lookups: `ToolStore.get_by_key` of a registered tool, one after another and
  32 at once. SQLite answers repeated lookups from memory while its `data_version` is
  unchanged; PostgreSQL, written by other replicas too, queries every time. The row
  `sqlite query` makes SQLite query every time too (a query through a worker thread).
- response store writes: `ResponseStore.save_text` of a 4 KB record, 32 at once.
  SQLite returns at once and writes behind; PostgreSQL returns once the record is
  committed (the saves that wait together share one transaction).

PostgreSQL is a server of the benchmark's own on loopback (fsync off, as in the tests:
the cost measured is the sidecar's and the round trip's, not the disk's).
Run with `python -m tests.bench` or `python -m tests.bench.bench_database`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from sidecar.database import Database
from sidecar.database.postgres import PostgresDatabase
from sidecar.database.sqlite import SqliteDatabase
from sidecar.llm.store import RESPONSES_SCHEMA, ResponseStore
from sidecar.registry.store import REGISTRY_SCHEMA, ToolStore
from tests.bench.timing import timed
from tests.support.postgres import PostgresServer
from tests.unit.test_store import function_body, stored

LOOKUPS = 3000
WRITES = 3000
CONCURRENCY = 32
RECORD = '{"response":{"id":"%s"},"history":[],"pad":"' + "x" * 4000 + '"}'


class Forgetful:
    """A SQLite database that never lets the store keep a lookup: every one is a query
    (through a worker thread), as on PostgreSQL."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._database = database

    def __getattr__(self, name: str) -> object:
        return getattr(self._database, name)

    def change_token(self) -> None:
        return None


async def lookups(database: Database) -> tuple[float, float]:
    """p50 ms of sequential lookups; lookups per second at CONCURRENCY."""
    store = ToolStore(database)
    if await store.get_by_key("bench_lookup") is None:
        await store.insert(stored(function_body(key="bench_lookup")))

    async def lookup() -> None:
        assert await store.get_by_key("bench_lookup") is not None

    p50 = statistics.median(await timed(lookup, LOOKUPS, warm_up=50))
    return p50, await per_second(lookup, LOOKUPS)


async def writes(database: Database) -> tuple[float, float]:
    """p50 ms of a save among CONCURRENCY at once; saves per second."""
    spent: list[float] = []
    async with ResponseStore(database) as store:
        counter = iter(range(10**9))

        async def save() -> None:
            response_id = f"resp_{next(counter)}"
            started = time.perf_counter()
            await store.save_text(response_id, 1, RECORD % response_id)
            spent.append((time.perf_counter() - started) * 1e3)

        rate = await per_second(save, WRITES)
    return statistics.median(spent), rate


async def per_second(call: Callable[[], Awaitable[None]], total: int) -> float:
    """Calls per second with CONCURRENCY workers sharing `total` calls."""
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(CONCURRENCY):
            group.start_soon(worker)
    return total / (time.perf_counter() - started)


async def run(server: PostgresServer, folder: Path) -> None:
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    async with (
        SqliteDatabase(folder / "registry.sqlite3", REGISTRY_SCHEMA) as registry,
        SqliteDatabase(folder / "responses.sqlite3", RESPONSES_SCHEMA) as responses,
    ):
        rows["sqlite"] = {"lookup": await lookups(registry), "write": await writes(responses)}
        forgetful: Database = Forgetful(registry)  # type: ignore[assignment]
        rows["sqlite query"] = {"lookup": await lookups(forgetful), "write": (0.0, 0.0)}
    schemas = (REGISTRY_SCHEMA, RESPONSES_SCHEMA)
    async with PostgresDatabase(server.database(), schemas) as shared:
        rows["postgresql"] = {"lookup": await lookups(shared), "write": await writes(shared)}

    print(f"{'':<12}{'lookup p50':>12}{'lookups/s':>12}{'save p50':>12}{'saves/s':>12}")
    for name, row in rows.items():
        (lookup_p50, lookup_rate), (write_p50, write_rate) = row["lookup"], row["write"]
        saves = f"{write_p50:>10.3f}ms{write_rate:>12.0f}" if write_rate else ""
        print(f"{name:<12}{lookup_p50:>10.3f}ms{lookup_rate:>12.0f}{saves}")
    pg, lite = rows["postgresql"], rows["sqlite"]
    print(
        "postgresql / sqlite:"
        f" lookup p50 x{pg['lookup'][0] / lite['lookup'][0]:.1f},"
        f" lookups/s x{pg['lookup'][1] / lite['lookup'][1]:.2f},"
        f" save p50 x{pg['write'][0] / lite['write'][0]:.1f},"
        f" saves/s x{pg['write'][1] / lite['write'][1]:.2f}"
    )


def main() -> None:
    server = PostgresServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            anyio.run(run, server, Path(folder))
    finally:
        server.close()


if __name__ == "__main__":
    main()
