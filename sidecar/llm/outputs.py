"""A run's output items and the stream events that tell a client about them.

Every item gets its index and id here; each change is both kept (for the response
object) and emitted as a Responses streaming event (for `stream: true`; a run that
is not streamed emits into nothing). Assistant text goes through a stream redactor
per message, so a secret split across deltas is masked all the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ulid import ULID

from sidecar.llm.items import FunctionCallItem, MessageItem, ReasoningItem, TextPart
from sidecar.llm.wire_items import function_call_item, message_item, reasoning_item
from sidecar.redaction import Redactor, StreamRedactor

__all__ = ["Emit", "Outputs", "Progress", "new_item_id"]

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
Progress = Callable[[str], Awaitable[None]]


def new_item_id(prefix: str) -> str:
    """`msg_…`, `fc_…`, `rs_…`, `tc_…`: a fresh output item id."""
    return f"{prefix}_{ULID()}"


class Outputs:
    """The output list of one run, streamed as it grows."""

    def __init__(self, emit: Emit, redactor: Redactor, progress: Progress | None = None) -> None:
        self._emit = emit
        self._redactor = redactor
        self._progress = progress
        self.items: list[dict[str, Any]] = []
        self._text: _OpenText | None = None
        self._reasoning: _OpenReasoning | None = None

    async def notify(self, message: str) -> None:
        """Tell a caller that follows the run's progress (an MCP client) what it does now."""
        if self._progress is not None:
            await self._progress(message)

    async def add(self, item: dict[str, Any]) -> int:
        """Append an item (as it is now) and announce it; its output index."""
        self.items.append(item)
        index = len(self.items) - 1
        await self._emit("response.output_item.added", {"output_index": index, "item": item})
        return index

    async def done(self, index: int, item: dict[str, Any]) -> None:
        """An item is final."""
        self.items[index] = item
        await self._emit("response.output_item.done", {"output_index": index, "item": item})

    # Assistant text, streamed.

    async def text(self, delta: str) -> None:
        if self._text is None:
            await self.close_reasoning()
            item_id = new_item_id("msg")
            shell = {
                "type": "message",
                "id": item_id,
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            index = await self.add(shell)
            self._text = _OpenText(index, item_id, self._redactor.stream())
            part = {"type": "output_text", "text": "", "annotations": []}
            await self._emit(
                "response.content_part.added",
                {"item_id": item_id, "output_index": index, "content_index": 0, "part": part},
            )
        await self._text_delta(self._text, self._text.redactor.feed(delta))

    async def _text_delta(self, opened: _OpenText, piece: str) -> None:
        if not piece:
            return
        opened.parts.append(piece)
        await self._emit(
            "response.output_text.delta",
            {
                "item_id": opened.item_id,
                "output_index": opened.index,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            },
        )

    async def close_text(self, *, truncated: bool = False) -> MessageItem | None:
        """End the open message; the assistant message for the history (None if none)."""
        opened, self._text = self._text, None
        if opened is None:
            return None
        await self._text_delta(opened, opened.redactor.close(truncated=truncated))
        text = "".join(opened.parts)
        where = {"item_id": opened.item_id, "output_index": opened.index, "content_index": 0}
        await self._emit("response.output_text.done", {**where, "text": text, "logprobs": []})
        part = {"type": "output_text", "text": text, "annotations": []}
        await self._emit("response.content_part.done", {**where, "part": part})
        message = MessageItem("assistant", (TextPart(text),), opened.item_id)
        wire = message_item(message, opened.item_id)
        if truncated:
            wire["status"] = "incomplete"  # the model's answer broke off partway
        await self.done(opened.index, wire)
        return message

    # Reasoning, streamed.

    async def reasoning(self, delta: str) -> None:
        if self._reasoning is None:
            item_id = new_item_id("rs")
            index = await self.add({"type": "reasoning", "id": item_id, "summary": []})
            self._reasoning = _OpenReasoning(index, item_id)
        if delta:
            self._reasoning.parts.append(delta)
            await self._emit(
                "response.reasoning_summary_text.delta",
                {
                    "item_id": self._reasoning.item_id,
                    "output_index": self._reasoning.index,
                    "summary_index": 0,
                    "delta": self._redactor.redact(delta),
                },
            )

    async def close_reasoning(
        self, opaque: str | None = None, provider: str | None = None
    ) -> ReasoningItem | None:
        opened, self._reasoning = self._reasoning, None
        if opened is None:
            return None
        summary = self._redactor.redact("".join(opened.parts))
        item = ReasoningItem(summary, opened.item_id, opaque, provider)
        await self.done(opened.index, reasoning_item(item, opened.item_id))
        return item

    # Function calls handed to the client.

    async def function_call(self, call: FunctionCallItem) -> dict[str, Any]:
        """A function call the client runs: added, its arguments, done."""
        item_id = new_item_id("fc")
        wire = function_call_item(call, item_id, status="in_progress")
        index = await self.add({**wire, "arguments": ""})
        where = {"item_id": item_id, "output_index": index}
        if call.arguments:
            await self._emit(
                "response.function_call_arguments.delta", {**where, "delta": call.arguments}
            )
        await self._emit(
            "response.function_call_arguments.done",
            {**where, "name": call.name, "arguments": call.arguments},
        )
        final = function_call_item(call, item_id)
        await self.done(index, final)
        return final


class _OpenText:
    def __init__(self, index: int, item_id: str, redactor: StreamRedactor) -> None:
        self.index = index
        self.item_id = item_id
        self.redactor = redactor
        self.parts: list[str] = []


class _OpenReasoning:
    def __init__(self, index: int, item_id: str) -> None:
        self.index = index
        self.item_id = item_id
        self.parts: list[str] = []
