"""Messages between the pool, the zygote and the children: JSON, never pickle.

A call socket carries frames: a 4-byte big-endian length, then that many bytes of
UTF-8 JSON. The control and status sockets are `SOCK_SEQPACKET`, so one datagram
is one JSON message (with file descriptors beside it). Every read is capped and
every document is depth-checked, because the far end of a call socket may be
running hostile code.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from typing import TypeAlias

__all__ = [
    "DATAGRAM_BYTES",
    "MAX_DEPTH",
    "FramingError",
    "JsonValue",
    "decode",
    "decode_datagram",
    "encode",
    "encode_frame",
    "receive_datagram",
    "receive_encoded",
    "receive_frame",
    "send_datagram",
    "send_encoded",
    "send_frame",
]

JsonValue: TypeAlias = dict[str, "JsonValue"] | list["JsonValue"] | str | int | float | bool | None

HEADER = struct.Struct(">I")
_FD = struct.Struct("i")
MAX_DEPTH = 100
DATAGRAM_BYTES = 65_536
_CHUNK = 262_144


class FramingError(Exception):
    """A message that is too large, truncated or not the JSON we accept."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "too_large" | "malformed"


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


# Made once: json.dumps and json.loads with options build a new one per message.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def encode(message: JsonValue) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are refused."""
    text = _ENCODER.encode(message)
    return text.encode("utf-8")


def encode_frame(message: JsonValue) -> bytes:
    """`encode` with the length header in front."""
    body = encode(message)
    return HEADER.pack(len(body)) + body


def decode(body: bytes, max_depth: int = MAX_DEPTH) -> JsonValue:
    """Parse UTF-8 JSON no deeper than `max_depth`, or raise `FramingError`."""
    try:
        value: JsonValue = _DECODER.decode(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise FramingError("malformed", f"not a JSON document: {type(exc).__name__}") from None
    # Counting brackets is a cheap C-speed bound; walk only when it could be too deep.
    if body.count(b"[") + body.count(b"{") > max_depth and _depth(value) > max_depth:
        raise FramingError("malformed", f"JSON nested deeper than {max_depth}")
    return value


def _depth(value: JsonValue) -> int:
    deepest = 0
    stack: list[tuple[JsonValue, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[JsonValue] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


# Blocking side: the zygote and the children.


def send_frame(sock: socket.socket, message: JsonValue) -> None:
    """Write one frame, blocking."""
    sock.sendall(encode_frame(message))


def receive_frame(sock: socket.socket, max_bytes: int) -> JsonValue | None:
    """Read one frame, blocking; `None` on end of stream before a frame starts."""
    header = _receive_exact(sock, HEADER.size, eof_ok=True)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > max_bytes:
        raise FramingError("too_large", f"a message of {size} bytes exceeds {max_bytes}")
    body = _receive_exact(sock, size, eof_ok=False)
    assert body is not None
    return decode(body)


def _receive_exact(sock: socket.socket, size: int, *, eof_ok: bool) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        count = sock.recv_into(view[done:], min(size - done, _CHUNK))
        if count == 0:
            if done == 0 and eof_ok:
                return None
            raise FramingError("malformed", "the stream ended inside a message")
        done += count
    return bytes(buffer)


def send_datagram(sock: socket.socket, message: JsonValue, fds: tuple[int, ...] = ()) -> None:
    """Send one SEQPACKET message, with `fds` passed as SCM_RIGHTS."""
    send_encoded(sock, encode(message), fds)


def receive_datagram(sock: socket.socket, max_fds: int = 0) -> tuple[JsonValue, list[int]] | None:
    """Receive one SEQPACKET message and its fds (close-on-exec); `None` at end of stream."""
    received = receive_encoded(sock, max_fds)
    return None if received is None else decode_datagram(*received)


# sendmsg/recvmsg directly: far fewer objects touched than `socket.send_fds`, which
# matters most in the zygote (after each fork, every page it writes is copied, as
# its children share them). It also sends messages it has encoded beforehand.


def send_encoded(sock: socket.socket, data: bytes, fds: tuple[int, ...] = ()) -> None:
    """`send_datagram` for a message already encoded."""
    if fds:
        rights = struct.pack(f"{len(fds)}i", *fds)
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
    else:
        sock.sendmsg([data])


def receive_encoded(sock: socket.socket, max_fds: int = 0) -> tuple[bytes, list[int]] | None:
    """`receive_datagram` without decoding: the message's bytes and its fds."""
    data, ancillary, flags, _ = sock.recvmsg(
        DATAGRAM_BYTES, socket.CMSG_LEN(max_fds * _FD.size), socket.MSG_CMSG_CLOEXEC
    )
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            whole = len(payload) - len(payload) % _FD.size
            fds += [fd for (fd,) in _FD.iter_unpack(payload[:whole])]
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        _close_all(fds)
        raise FramingError("malformed", "a control message was truncated")
    if not data:
        _close_all(fds)
        return None
    return data, fds


def decode_datagram(data: bytes, fds: list[int]) -> tuple[JsonValue, list[int]]:
    """Decode a received message; its fds are closed if it is not valid JSON."""
    try:
        return decode(data), fds
    except FramingError:
        _close_all(fds)
        raise


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        _close_quietly(fd)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
