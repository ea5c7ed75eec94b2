"""The pool's side of the sockets: framing on non-blocking sockets, on the event loop."""

from __future__ import annotations

import socket

import anyio

from sandbox.framing import (
    HEADER,
    FramingError,
    JsonValue,
    decode,
    decode_datagram,
    encode,
    encode_frame,
    receive_encoded,
    send_encoded,
)

__all__ = ["AsyncChannel", "receive_datagram", "send_datagram"]

_CHUNK = 262_144


class AsyncChannel:
    """Length-prefixed JSON frames over a non-blocking stream socket."""

    def __init__(self, sock: socket.socket, max_bytes: int) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._max_bytes = max_bytes
        self._buffer = bytearray()

    async def send(self, message: JsonValue) -> None:
        """Write one frame."""
        data = memoryview(encode_frame(message))
        while data:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                await anyio.wait_writable(self.sock)
                continue
            data = data[sent:]

    async def receive(self) -> JsonValue | None:
        """Read one frame; `None` at end of stream between frames."""
        if not await self._fill(HEADER.size):
            if self._buffer:
                raise FramingError("malformed", "the stream ended inside a message")
            return None
        (size,) = HEADER.unpack_from(self._buffer)
        if size > self._max_bytes:
            raise FramingError("too_large", f"a message of {size} bytes exceeds {self._max_bytes}")
        end = HEADER.size + size
        if not await self._fill(end):
            raise FramingError("malformed", "the stream ended inside a message")
        body = bytes(self._buffer[HEADER.size : end])
        del self._buffer[:end]
        return decode(body)

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            try:
                chunk = self.sock.recv(max(_CHUNK, size - len(self._buffer)))
            except BlockingIOError:
                await anyio.wait_readable(self.sock)
                continue
            if not chunk:
                return False
            self._buffer += chunk
        return True


async def send_datagram(sock: socket.socket, message: JsonValue, fds: tuple[int, ...] = ()) -> None:
    """Send one SEQPACKET message (and `fds`) on a non-blocking socket."""
    data = encode(message)
    while True:
        try:
            send_encoded(sock, data, fds)
        except BlockingIOError:
            await anyio.wait_writable(sock)
            continue
        return


async def receive_datagram(
    sock: socket.socket, max_fds: int = 0
) -> tuple[JsonValue, list[int]] | None:
    """Receive one SEQPACKET message and its fds on a non-blocking socket; `None` at the end."""
    while True:
        try:
            received = receive_encoded(sock, max_fds)
        except BlockingIOError:
            await anyio.wait_readable(sock)
            continue
        return None if received is None else decode_datagram(*received)
