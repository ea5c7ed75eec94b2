"""PostgreSQL (`SIDECAR_DATABASE_URL=postgresql://...`): one database for every store,
shared by every replica, through psycopg 3 and its connection pool.

Migrations run at start (and by `sidecar db migrate`) in one transaction under an
advisory lock, so replicas starting together apply each version once; the versions
applied are rows of `sidecar_schema`. A connection lost to a restart of the server is
dropped from the pool: the statement that met it answers `StoreUnavailable` (a read is
tried once more on a fresh connection first), and the next ones reconnect.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import lru_cache
from typing import Literal, TypeVar

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from sidecar.database.base import OpenedInBlock, Params, Row, Schema, UniqueViolation
from sidecar.errors import StoreUnavailable
from sidecar.logs import get_logger

__all__ = ["PostgresDatabase", "describe_url"]

T = TypeVar("T")
log = get_logger("sidecar.database")
# Any fixed number: replicas that migrate at the same moment queue on it.
MIGRATION_LOCK = 0x5_1DECA2
_KEY_DETAIL = re.compile(r"Key \(([^)]*)\)=")
Connection = psycopg.AsyncConnection[tuple[object, ...]]


class PostgresDatabase(OpenedInBlock):
    """A pool of connections to one PostgreSQL database holding `schemas`."""

    dialect: Literal["postgresql"] = "postgresql"
    shared = True

    def __init__(
        self,
        url: str,
        schemas: Sequence[Schema],
        *,
        pool_size: int = 10,
        timeout: float = 5.0,
    ) -> None:
        self.schemas = tuple(schemas)
        self._where = describe_url(url)
        self._timeout = timeout
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout))},
            min_size=min(2, pool_size),
            max_size=pool_size,
            open=False,
            timeout=timeout,
            reconnect_timeout=timeout,
            name="sidecar-store",
        )
        self._opened = False

    async def open(self) -> None:
        """Connect and bring every schema up to date."""
        await self.migrate()

    async def migrate(self) -> dict[str, tuple[int, int]]:
        """Apply what is missing of each schema; each one's version before and after."""
        if not self._opened:
            try:
                await self._pool.open(wait=True, timeout=self._timeout)
            except PoolTimeout:
                await self._pool.close()
                raise StoreUnavailable(
                    f"PostgreSQL at {self._where} did not answer within {self._timeout:g} s"
                ) from None
            self._opened = True
        with _mapped(self._where):
            async with self._pool.connection() as conn, conn.transaction():
                return await _migrate(conn, self.schemas)

    async def close(self) -> None:
        """Close the pool; closing twice is harmless."""
        if self._opened:
            self._opened = False
            await self._pool.close()

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        async def read(conn: Connection) -> Row | None:
            return await (await conn.execute(_placeholders(sql), params)).fetchone()

        return await self._read(read)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        async def read(conn: Connection) -> list[Row]:
            return await (await conn.execute(_placeholders(sql), params)).fetchall()

        return await self._read(read)

    async def execute(self, sql: str, params: Params = ()) -> int:
        with _mapped(self._where):
            async with self._pool.connection() as conn:
                return (await conn.execute(_placeholders(sql), params)).rowcount

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        with _mapped(self._where):
            async with (
                self._pool.connection() as conn,
                conn.transaction(),
                conn.cursor() as cursor,
            ):
                await cursor.executemany(_placeholders(sql), rows)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PostgresTransaction]:
        with _mapped(self._where):
            async with self._pool.connection() as conn, conn.transaction():
                yield _PostgresTransaction(conn)

    def change_token(self) -> None:
        return None  # other replicas write too: nothing read may be kept

    async def ping(self) -> None:
        await self.fetch_one("SELECT 1")

    def describe(self) -> str:
        return self._where

    async def _read(self, read: Callable[[Connection], Awaitable[T]]) -> T:
        """A read, tried once more on another connection when the first one was lost
        (a restarted server leaves every pooled connection dead)."""
        try:
            with _mapped(self._where):
                async with self._pool.connection() as conn:
                    return await read(conn)
        except StoreUnavailable:
            await self._pool.check()  # drop the other dead ones too
        with _mapped(self._where):
            async with self._pool.connection() as conn:
                return await read(conn)


class _PostgresTransaction:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        return (await self._conn.execute(_placeholders(sql), params)).rowcount

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await (await self._conn.execute(_placeholders(sql), params)).fetchall()


async def _migrate(conn: Connection, schemas: Sequence[Schema]) -> dict[str, tuple[int, int]]:
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS sidecar_schema"
        " (name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    applied: dict[str, tuple[int, int]] = {}
    for schema in schemas:
        cursor = await conn.execute(
            "SELECT version FROM sidecar_schema WHERE name = %s", (schema.name,)
        )
        row = await cursor.fetchone()
        current = 0 if row is None else int(str(row[0]))
        schema.check_known(current)
        for statements in schema.migrations[current:]:
            for statement in statements:
                await conn.execute(statement.encode())
        await conn.execute(
            "INSERT INTO sidecar_schema (name, version) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET version = excluded.version",
            (schema.name, schema.version),
        )
        applied[schema.name] = (current, schema.version)
        if current < schema.version:
            log.info("database.migrated", schema=schema.name, before=current, after=schema.version)
    return applied


def describe_url(url: str) -> str:
    """`postgresql://user@host:port/dbname`: where, never the password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(an address that does not parse)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


@lru_cache(maxsize=256)
def _placeholders(sql: str) -> bytes:
    """The stores' `?` placeholders as psycopg's `%s` (the stores' SQL has no other `?`
    or `%`)."""
    return sql.replace("?", "%s").encode()


@contextmanager
def _mapped(where: str) -> Iterator[None]:
    """psycopg's failures as the stores know them."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        found = _KEY_DETAIL.match(exc.diag.message_detail or "")
        columns = tuple(c.strip() for c in found.group(1).split(",")) if found else ()
        raise UniqueViolation(exc.diag.table_name or "", columns) from None
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        log.warning("database.unavailable", where=where, error=type(exc).__name__)
        raise StoreUnavailable(
            f"PostgreSQL at {where} cannot answer now ({type(exc).__name__})"
        ) from None
