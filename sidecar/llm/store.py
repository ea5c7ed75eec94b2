"""Stored responses, redacted before they are written: the state directory's
`responses.sqlite3`, or PostgreSQL shared by every replica.

A record is the response object as answered and the conversation it ends (the core's
own items), so that a continuation can be rebuilt for any provider, with the calls
that still wait for their outputs. The caller redacts; this module keeps what it is
given and reads it back.

One writer task writes what has gathered in one transaction, so many concurrent
responses cost a few transactions, not one each (measured: a save per request on
worker threads halved the requests per second at concurrency 32). How a save waits
depends on who else reads the database:

- SQLite, this process alone: the save returns at once and the record is read from
  memory until it is written, a few milliseconds later. A record not yet written is
  lost if the process dies; closing the store writes everything first.
- PostgreSQL, shared by replicas: the save returns once its transaction committed,
  since the continuation may reach another replica at once. A save that cannot be
  written raises `StoreUnavailable`, and the record is not kept anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from sidecar.database import Database, Schema
from sidecar.database.base import OpenedInBlock
from sidecar.errors import StoreUnavailable
from sidecar.llm.items import (
    FunctionCallItem,
    FunctionOutputItem,
    ImagePart,
    Item,
    MessageItem,
    Part,
    ReasoningItem,
    TextPart,
)
from sidecar.logs import get_logger

__all__ = [
    "RESPONSES_SCHEMA",
    "ResponseStore",
    "StoredResponse",
    "items_from_json",
    "items_to_json",
]

log = get_logger("sidecar.llm.store")
WRITE_GATHER_SECONDS = 0.005
RESPONSES_SCHEMA = Schema(
    "responses",
    (
        (
            """CREATE TABLE responses (
                id TEXT PRIMARY KEY,
                created BIGINT NOT NULL,
                body TEXT NOT NULL
            )""",
        ),
    ),
)
UPSERT = (
    "INSERT INTO responses (id, created, body) VALUES (?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET created = excluded.created, body = excluded.body"
)


@dataclass(frozen=True)
class StoredResponse:
    """A response as answered, the conversation up to its end, and the calls it waits for:
    outputs from the client (`pending` call ids) and approvals (approval id -> call id)."""

    response: dict[str, Any]
    history: tuple[Item, ...]
    pending: tuple[str, ...] = ()
    approvals: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.response["id"])


@dataclass
class _Batch:
    """The records the writer takes together next; done once they are written (or not)."""

    done: anyio.Event = field(default_factory=anyio.Event)
    error: StoreUnavailable | None = None


class ResponseStore(OpenedInBlock):
    """Responses in the responses' database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._durable = database.shared
        self._unwritten: dict[str, tuple[int, str]] = {}
        self._next = _Batch()
        self._wake = anyio.Event()
        self._writing = anyio.Lock()
        self._closing = False
        self._tasks: TaskGroup | None = None

    async def open(self) -> None:
        """Start the writer (`async with store:` does, and closes it at the end)."""
        self._tasks = await anyio.create_task_group().__aenter__()
        self._tasks.start_soon(self._write_loop)

    async def close(self) -> None:
        """Write what is left and stop the writer, in the task that opened the store."""
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            self._closing = True
            self._wake.set()
            await tasks.__aexit__(None, None, None)

    @staticmethod
    def encode(record: StoredResponse) -> str:
        """The record as the JSON text that is stored (redact this, then `save_text`)."""
        body = {
            "response": record.response,
            "history": items_to_json(record.history),
            "pending": list(record.pending),
            "approvals": dict(record.approvals),
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    async def save_text(self, response_id: str, created: int, text: str) -> None:
        """Keep (or replace) a record given as its encoded, redacted text; readable at once.

        On a shared database, returns once it is written (`StoreUnavailable` if not)."""
        if self._tasks is None:
            raise RuntimeError("the response store is not open")
        self._unwritten[response_id] = (created, text)
        batch = self._next
        self._wake.set()
        if self._durable:
            await batch.done.wait()
            if batch.error is not None:
                raise batch.error

    async def get(self, response_id: str) -> StoredResponse | None:
        """The record of `response_id`, or None."""
        waiting = self._unwritten.get(response_id)
        if waiting is not None:
            return _decoded(waiting[1])
        row = await self.database.fetch_one(
            "SELECT body FROM responses WHERE id = ?", (response_id,)
        )
        return None if row is None else _decoded(str(row[0]))

    async def delete(self, response_id: str) -> bool:
        """Forget a response; False when there was none."""
        # Not while the writer writes: it may hold the record taken out of memory here.
        async with self._writing:
            waiting = self._unwritten.pop(response_id, None)
            changed = await self.database.execute(
                "DELETE FROM responses WHERE id = ?", (response_id,)
            )
        return bool(changed) or waiting is not None

    async def ping(self) -> None:
        """Raise if the database cannot be read."""
        await self.database.ping()

    async def _write_loop(self) -> None:
        """The writer: each wake-up writes everything gathered, in one transaction."""
        while True:
            await self._wake.wait()
            if not self._durable and not self._closing:
                # Let a busy service gather more records first: a wake-up per record
                # costs the event loop more than the writes.
                await anyio.sleep(WRITE_GATHER_SECONDS)
            with anyio.CancelScope(shield=True):
                async with self._writing:
                    # The batch and its records are taken together: a save from now on
                    # waits for the next one.
                    self._wake = anyio.Event()
                    batch, self._next = self._next, _Batch()
                    rows = [(i, created, text) for i, (created, text) in self._unwritten.items()]
                    await self._write(batch, rows)
            if self._closing:
                if self._unwritten and batch.error is None:
                    continue  # saved while that write ran, before the close: one more
                if self._unwritten:  # what could not be written is lost: say how much
                    log.error("responses.unwritten_at_close", records=len(self._unwritten))
                return

    async def _write(self, batch: _Batch, rows: list[tuple[str, int, str]]) -> None:
        try:
            if rows:
                await self.database.execute_many(UPSERT, rows)
        except StoreUnavailable as exc:
            batch.error = exc
        except RuntimeError as exc:  # closed under the writer: savers must not wait forever
            batch.error = StoreUnavailable(f"the response store cannot be written: {exc}")
        if batch.error is not None:
            log.warning("responses.write_failed", records=len(rows), error=batch.error.message)
        for response_id, created, text in rows:
            # Written, or refused to a caller that waits: out of memory either way. On
            # a database of this process alone, the next wake-up tries again.
            taken = batch.error is None or self._durable
            if taken and self._unwritten.get(response_id) == (created, text):
                del self._unwritten[response_id]
        batch.done.set()


def _decoded(text: str) -> StoredResponse:
    body = json.loads(text)
    return StoredResponse(
        body["response"],
        items_from_json(body["history"]),
        tuple(body.get("pending", ())),
        body.get("approvals", {}),
    )


def items_to_json(items: tuple[Item, ...]) -> list[dict[str, Any]]:
    """Items as plain JSON (each tagged by its kind)."""
    out: list[dict[str, Any]] = []
    for item in items:
        match item:
            case MessageItem(role, parts, item_id):
                out.append(
                    {
                        "kind": "message",
                        "role": role,
                        "id": item_id,
                        "parts": [_part(p) for p in parts],
                    }
                )
            case FunctionCallItem(call_id, name, arguments, item_id):
                out.append(
                    {
                        "kind": "call",
                        "call_id": call_id,
                        "name": name,
                        "arguments": arguments,
                        "id": item_id,
                    }
                )
            case FunctionOutputItem(call_id, output):
                out.append({"kind": "output", "call_id": call_id, "output": output})
            case ReasoningItem(summary, item_id, opaque, provider):
                out.append(
                    {
                        "kind": "reasoning",
                        "summary": summary,
                        "id": item_id,
                        "opaque": opaque,
                        "provider": provider,
                    }
                )
    return out


def items_from_json(raw: list[dict[str, Any]]) -> tuple[Item, ...]:
    """The items `items_to_json` wrote."""
    items: list[Item] = []
    for entry in raw:
        match entry["kind"]:
            case "message":
                parts = tuple(_from_part(part) for part in entry["parts"])
                items.append(MessageItem(entry["role"], parts, entry.get("id")))
            case "call":
                items.append(
                    FunctionCallItem(
                        entry["call_id"], entry["name"], entry["arguments"], entry.get("id")
                    )
                )
            case "output":
                items.append(FunctionOutputItem(entry["call_id"], entry["output"]))
            case "reasoning":
                items.append(
                    ReasoningItem(
                        entry["summary"],
                        entry.get("id"),
                        entry.get("opaque"),
                        entry.get("provider"),
                    )
                )
    return tuple(items)


def _part(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    return {"image": part.url, "detail": part.detail}


def _from_part(raw: dict[str, Any]) -> Part:
    if "text" in raw:
        return TextPart(raw["text"])
    return ImagePart(raw["image"], raw.get("detail"))
