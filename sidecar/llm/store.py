"""Stored responses: the state directory's `responses.sqlite3`, redacted before it is written.

A record is the response object as answered and the conversation it ends (the core's
own items), so that a continuation can be rebuilt for any provider, with the calls
that still wait for their outputs. The caller redacts; this module keeps what it is
given and reads it back.

Writes are behind the answers: a save puts the record in memory, where it can be read
at once, and one writer thread writes what has gathered in one transaction. Many
concurrent responses then cost one thread and a few transactions, not a thread hand-off
each (measured: a save per request on worker threads halved the requests per second at
concurrency 32). A record not yet written is lost if the process dies; closing the
store writes everything first.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio.to_thread

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
from sidecar.sqlite_file import SqliteFile

__all__ = ["ResponseStore", "StoredResponse", "items_from_json", "items_to_json"]

WRITE_GATHER_SECONDS = 0.005
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            created INTEGER NOT NULL,
            body TEXT NOT NULL
        )""",
    ),
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


class ResponseStore:
    """Responses in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self._file = SqliteFile(path, MIGRATIONS, what="response store")
        self._unwritten: dict[str, tuple[int, str]] = {}
        self._state = threading.Lock()  # guards `_unwritten`
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    async def __aenter__(self) -> ResponseStore:
        await self._file.open()
        self._writer = threading.Thread(target=self._write_loop, name="response-store", daemon=True)
        self._writer.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            await anyio.to_thread.run_sync(writer.join)
        await self._file.close()

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
        """Keep (or replace) a record given as its encoded, redacted text; readable at once."""
        with self._state:
            self._unwritten[response_id] = (created, text)
        self._queue.put(response_id)

    async def get(self, response_id: str) -> StoredResponse | None:
        """The record of `response_id`, or None."""
        with self._state:
            waiting = self._unwritten.get(response_id)
        if waiting is not None:
            return _decoded(waiting[1])
        sql = "SELECT body FROM responses WHERE id = ?"
        row = await self._file.run(lambda conn: conn.execute(sql, (response_id,)).fetchone())
        return None if row is None else _decoded(row[0])

    async def delete(self, response_id: str) -> bool:
        """Forget a response; False when there was none."""
        with self._state:
            waiting = self._unwritten.pop(response_id, None)
        sql = "DELETE FROM responses WHERE id = ?"
        changed = await self._file.run(lambda conn: conn.execute(sql, (response_id,)).rowcount)
        return bool(changed) or waiting is not None

    def _write_loop(self) -> None:
        """The writer thread: each wake-up writes everything gathered, in one transaction."""
        while True:
            first = self._queue.get()
            # Let a busy service gather more records before the writer takes the
            # interpreter lock from the event loop's thread (a wake-up per record costs
            # the loop more than the writes).
            time.sleep(WRITE_GATHER_SECONDS)
            ids = {first}
            while True:
                try:
                    ids.add(self._queue.get_nowait())
                except queue.Empty:
                    break
            batch = {response_id for response_id in ids if response_id is not None}
            self._file.run_here(partial(self._write, ids=batch))
            if None in ids:
                return

    def _write(self, conn: sqlite3.Connection, ids: set[str]) -> None:
        # Under the connection's lock: a delete either took the record out of memory
        # before this snapshot, or deletes the row after this write.
        with self._state:
            rows = [(i, *self._unwritten[i]) for i in ids if i in self._unwritten]
        if not rows:
            return
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO responses (id, created, body) VALUES (?, ?, ?)", rows
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        with self._state:
            for response_id, created, text in rows:
                if self._unwritten.get(response_id) == (created, text):
                    del self._unwritten[response_id]

    async def ping(self) -> None:
        """Raise if the file cannot be read."""
        await self._file.run(lambda conn: conn.execute("SELECT 1").fetchone())


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
