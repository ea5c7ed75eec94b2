"""The Responses benchmark's peers, each in its own process: a fake model provider and a relay.

`python -m tests.bench.chat_peers fake PORT` serves a fake OpenAI Chat Completions
provider: a raw asyncio protocol on uvloop with httptools (no framework), answering
pre-encoded bytes, so it costs far less CPU per call than what it is measured behind.
`POST /v1/chat/completions` answers, by the request's JSON:

    a message with role `tool` in it        a text answer (the tool round's second turn)
    `tools` and no such message             a call of `current_date` with `{}`
    neither                                 a text answer
    `"stream": true`                        the same as server-sent events (chunked, one
                                            write), ending `data: [DONE]`; model `long`
                                            streams LONG_DELTAS deltas holding SECRET

`GET /recorded` answers the last request bodies it took (oldest first), so a baseline
can replay exactly what the sidecar sent; `GET /healthz` answers `ok`.

`python -m tests.bench.chat_peers relay PORT UPSTREAM` serves a bare Starlette app with
one shared `httpx.AsyncClient` (limits as the sidecar's): `POST /v1/chat/completions`
forwards the body to `UPSTREAM/chat/completions` and answers the upstream's JSON bytes.
uvicorn is configured as `sidecar serve` configures it (see `tests.bench.peers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httptools
import httpx
import orjson
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.bench.peers import serve_like_the_sidecar

__all__ = ["LONG_DELTAS", "SECRET", "SHORT_DELTAS", "TOOL_NAME", "relay_app"]

TOOL_NAME = "current_date"
SECRET = "tok-" + "Qz8Lm3Vr6Kx1Pw"  # a secret variable of the long stream's request
SHORT_DELTAS = 8
LONG_DELTAS = 4000
_RECORDED = 8
_CREATED = 1_700_000_000
_CALL: dict[str, Any] = {
    "id": "call_bench",
    "type": "function",
    "function": {"name": TOOL_NAME, "arguments": "{}"},
}


def _head(status: str, content_type: bytes, extra: bytes) -> bytes:
    return b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + content_type + b"\r\n" + extra


def _json(body: Any, status: str = "200 OK") -> bytes:
    data = orjson.dumps(body)
    length = b"content-length: " + str(len(data)).encode() + b"\r\n\r\n"
    return _head(status, b"application/json", length) + data


def _usage() -> dict[str, Any]:
    return {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}


def _completion(message: dict[str, Any], finish: str) -> bytes:
    return _json(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": _CREATED,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", **message, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": _usage(),
            "system_fingerprint": "fp_bench",
        }
    )


def _chunk(delta: dict[str, Any], finish: str | None = None, *, usage: bool = False) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": "m",
        "system_fingerprint": "fp_bench",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = _usage()
    return _framed(b"data: " + orjson.dumps(body) + b"\n\n")


def _framed(data: bytes) -> bytes:
    """One chunk of a chunked HTTP/1.1 body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _stream(pieces: list[str], tool_call: bool = False) -> bytes:
    head = _head("200 OK", b"text/event-stream", b"transfer-encoding: chunked\r\n\r\n")
    chunks = [_chunk({"role": "assistant", "content": ""})]
    if tool_call:
        chunks.append(_chunk({"tool_calls": [{"index": 0, **_CALL}]}))
    chunks += [_chunk({"content": piece}) for piece in pieces]
    chunks.append(_chunk({}, "tool_calls" if tool_call else "stop"))
    chunks.append(_chunk({}, usage=True))
    chunks.append(_framed(b"data: [DONE]\n\n"))
    return head + b"".join(chunks) + b"0\r\n\r\n"


def _long_pieces() -> list[str]:
    """LONG_DELTAS short deltas of prose; SECRET arrives split across three of them."""
    pieces = [f"word{i % 97} " for i in range(LONG_DELTAS - 3)]
    middle = len(pieces) // 2
    third = len(SECRET) // 3
    secret = [SECRET[:third], SECRET[third : 2 * third], SECRET[2 * third :] + " "]
    return pieces[:middle] + secret + pieces[middle:]


_TEXT = "Today is a fine day."
_ANSWERS = {
    "text": _completion({"content": _TEXT}, "stop"),
    "call": _completion({"content": None, "tool_calls": [_CALL]}, "tool_calls"),
    "text stream": _stream([f"piece{i} " for i in range(SHORT_DELTAS)]),
    "call stream": _stream([], tool_call=True),
    "long stream": _stream(_long_pieces()),
    "ok": _head("200 OK", b"text/plain", b"content-length: 2\r\n\r\n") + b"ok",
    "not found": _json({"error": {"message": "not found"}}, "404 Not Found"),
    "bad": _json({"error": {"message": "not a chat request"}}, "400 Bad Request"),
}


class _Fake:
    """The fake's state: the recent request bodies."""

    def __init__(self) -> None:
        self.recorded: deque[Any] = deque(maxlen=_RECORDED)

    def answer(self, method: bytes, url: bytes, body: bytes) -> bytes:
        if method == b"GET":
            if url == b"/recorded":
                return _json(list(self.recorded))
            return _ANSWERS["ok" if url == b"/healthz" else "not found"]
        if url != b"/v1/chat/completions":
            return _ANSWERS["not found"]
        try:
            request = orjson.loads(body)
            messages = request["messages"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return _ANSWERS["bad"]
        self.recorded.append(request)
        answered = any(message.get("role") == "tool" for message in messages)
        kind = "call" if request.get("tools") and not answered else "text"
        if request.get("stream"):
            kind = "long" if kind == "text" and request.get("model") == "long" else kind
            return _ANSWERS[f"{kind} stream"]
        return _ANSWERS[kind]


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/1.1 keep-alive, parsed by httptools."""

    def __init__(self, fake: _Fake) -> None:
        self._fake = fake
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            assert self._transport is not None
            self._transport.close()

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = bytearray()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        assert self._transport is not None
        method = self._parser.get_method()
        self._transport.write(self._fake.answer(method, self._url, bytes(self._body)))
        if not self._parser.should_keep_alive():
            self._transport.close()


async def _serve_fake(port: int) -> None:
    fake = _Fake()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(fake), "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


def relay_app(upstream: str) -> Starlette:
    """POST /v1/chat/completions forwarded to `upstream`; GET /healthz."""
    clients: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        async with httpx.AsyncClient(trust_env=False, limits=limits) as client:
            clients.append(client)
            yield

    async def relay(request: Request) -> Response:
        answer = await clients[0].post(
            f"{upstream}/chat/completions",
            content=await request.body(),
            headers={"content-type": "application/json"},
        )
        return Response(answer.content, answer.status_code, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", relay, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )


def _serve_relay(port: int, upstream: str) -> None:
    serve_like_the_sidecar(relay_app(upstream), port)


def main(argv: list[str]) -> None:
    """`fake PORT` or `relay PORT UPSTREAM`; serve until SIGTERM."""
    match argv:
        case ["fake", port]:
            with contextlib.suppress(KeyboardInterrupt):
                uvloop.run(_serve_fake(int(port)))
        case ["relay", port, upstream]:
            _serve_relay(int(port), upstream)
        case _:
            raise SystemExit("usage: chat_peers fake PORT | relay PORT UPSTREAM")


if __name__ == "__main__":
    main(sys.argv[1:])
