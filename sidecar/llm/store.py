"""Stored responses: the state directory's `responses.sqlite3`, redacted before it is written.

A record is the response object as answered and the conversation it ends (the core's
own items), so that a continuation can be rebuilt for any provider, with the calls
that still wait for their outputs. The caller redacts; this module keeps what it is
given and reads it back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

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
    """A response as answered, the conversation up to its end, and the calls it waits for."""

    response: dict[str, Any]
    history: tuple[Item, ...]
    pending: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return str(self.response["id"])


class ResponseStore:
    """Responses in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self._file = SqliteFile(path, MIGRATIONS, what="response store")

    async def __aenter__(self) -> ResponseStore:
        await self._file.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._file.close()

    @staticmethod
    def encode(record: StoredResponse) -> str:
        """The record as the JSON text that is stored (redact this, then `save_text`)."""
        body = {
            "response": record.response,
            "history": items_to_json(record.history),
            "pending": list(record.pending),
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    async def save_text(self, response_id: str, created: int, text: str) -> None:
        """Keep (or replace) a record given as its encoded, redacted text."""
        sql = "INSERT OR REPLACE INTO responses (id, created, body) VALUES (?, ?, ?)"
        await self._file.run(lambda conn: conn.execute(sql, (response_id, created, text)))

    async def get(self, response_id: str) -> StoredResponse | None:
        """The record of `response_id`, or None."""
        sql = "SELECT body FROM responses WHERE id = ?"
        row = await self._file.run(lambda conn: conn.execute(sql, (response_id,)).fetchone())
        if row is None:
            return None
        body = json.loads(row[0])
        return StoredResponse(
            body["response"], items_from_json(body["history"]), tuple(body.get("pending", ()))
        )

    async def delete(self, response_id: str) -> bool:
        """Forget a response; False when there was none."""
        sql = "DELETE FROM responses WHERE id = ?"
        changed = await self._file.run(lambda conn: conn.execute(sql, (response_id,)).rowcount)
        return bool(changed)

    async def ping(self) -> None:
        """Raise if the file cannot be read."""
        await self._file.run(lambda conn: conn.execute("SELECT 1").fetchone())


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
