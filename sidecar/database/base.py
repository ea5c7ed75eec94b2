"""What the stores ask of a database, and the errors it answers with.

    UniqueViolation     a row would repeat a unique column (`table`, `columns`)
    StoreUnavailable    (sidecar.errors, 503) the database cannot answer now

A backend maps its driver's failures onto these, so a store never sees `sqlite3` or
`psycopg`: a taken key becomes the store's own `KeyTaken`, a database that is down or
restarting a 503 the caller can retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self

__all__ = ["Database", "OpenedInBlock", "Params", "Row", "Schema", "Transaction", "UniqueViolation"]

Row = tuple[Any, ...]
Params = Sequence[object]


@dataclass(frozen=True)
class Schema:
    """A store's tables: one tuple of statements per version, applied in order once each.

    The statements use the SQL both backends understand (TEXT, INTEGER, BIGINT,
    PRIMARY KEY, UNIQUE). A released version is never edited; a change is a new one.
    """

    name: str
    migrations: tuple[tuple[str, ...], ...]

    @property
    def version(self) -> int:
        return len(self.migrations)

    def check_known(self, version: int) -> None:
        """Refuse a database written by a newer sidecar (its tables may mean other things)."""
        if version > self.version:
            raise RuntimeError(
                f"{self.name} schema version {version} is newer than this sidecar knows "
                f"({self.version}); upgrade the sidecar"
            )


class OpenedInBlock:
    """`async with backend:` opens it (connects, migrates) and closes it at the end."""

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class UniqueViolation(Exception):
    """An insert or update would repeat a unique value of `table` (`columns`)."""

    def __init__(self, table: str, columns: tuple[str, ...]) -> None:
        super().__init__(f"unique constraint on {table} ({', '.join(columns)})")
        self.table = table
        self.columns = columns


class Transaction(Protocol):
    """Statements that commit together (or not at all) when the block ends."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query."""
        ...


class Database(Protocol):
    """A store's database. SQL uses `?` placeholders; rows come back as tuples."""

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]: ...

    @property
    def shared(self) -> bool:
        """Whether other processes (replicas) read it: then a write must be done before
        the answer that depends on it leaves, since the next request may go elsewhere."""
        ...

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or None."""
        ...

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query."""
        ...

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement on its own (autocommit); the number of rows it changed."""
        ...

    async def execute_many(self, sql: str, rows: Sequence[Params]) -> None:
        """Run one statement for each of `rows`, all in one transaction."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        ...

    def change_token(self) -> int | None:
        """A number that changes whenever anyone commits a write, read without waiting;
        None when the backend cannot tell (then nothing read may be kept in memory)."""
        ...

    async def ping(self) -> None:
        """Raise `StoreUnavailable` when the database cannot answer."""
        ...

    def describe(self) -> str:
        """Where the data lives, for logs (never a password)."""
        ...
