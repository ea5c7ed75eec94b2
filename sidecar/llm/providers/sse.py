"""A server-sent events reader, as the WHATWG HTML standard parses an event stream.

Lines end with LF, CRLF or CR (a CRLF split across two chunks is one line end);
`data:` lines of one event are joined with LF; a line starting with `:` is a comment
(keep-alive pings); a blank line dispatches the event; one leading space after the
colon is dropped; UTF-8 is decoded incrementally, so a character may span chunks.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass

__all__ = ["ServerEvent", "server_events"]


@dataclass(frozen=True)
class ServerEvent:
    """One dispatched event: its type (`message` when none was named) and its data."""

    event: str
    data: str


async def server_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[ServerEvent]:
    """The events of a byte stream; an event not ended by a blank line is dropped."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    event = ""
    data: list[str] = []
    skip_lf = False
    async for chunk in chunks:
        text = decoder.decode(chunk)
        if skip_lf and text.startswith("\n"):
            text = text[1:]
        skip_lf = False
        pending += text
        start = 0
        while True:
            end = _line_end(pending, start)
            if end < 0:
                break
            line = pending[start:end]
            if pending[end] == "\r":
                if end + 1 == len(pending):
                    skip_lf = True  # the LF of a CRLF may come with the next chunk
                elif pending[end + 1] == "\n":
                    end += 1
            start = end + 1
            if not line:
                if data:
                    yield ServerEvent(event or "message", "\n".join(data))
                event, data = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
        pending = pending[start:]


def _line_end(text: str, start: int) -> int:
    """The index of the next CR or LF at or after `start`, or -1."""
    lf = text.find("\n", start)
    cr = text.find("\r", start)
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)
