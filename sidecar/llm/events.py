"""Server-sent events of a streamed response (RESPONSES.md §6).

Each event is an `event: <type>` line and a `data: <json>` line carrying the type and
a `sequence_number` that starts at 0 and rises by one; the stream ends with
`data: [DONE]`. Each event is written as soon as it is made: nothing is held back or
batched (the first token's latency is the product).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

__all__ = ["DONE", "EventWriter"]

DONE = b"data: [DONE]\n\n"


class EventWriter:
    """Numbers the events of one stream and writes each as it comes."""

    def __init__(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        self._write = write
        self._sequence = 0

    async def __call__(self, event_type: str, payload: dict[str, Any]) -> None:
        """Write one event."""
        body = {"type": event_type, "sequence_number": self._sequence, **payload}
        self._sequence += 1
        await self._write(
            b"event: " + event_type.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"
        )

    async def done(self) -> None:
        """End the stream."""
        await self._write(DONE)
