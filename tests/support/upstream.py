"""A real HTTP upstream on loopback for tests and benchmarks: it records and echoes requests.

`RecordingUpstream` keeps each request as sent on the wire (raw path, body bytes) and
offers slow answers (`/slow`, which notes when its client leaves) and redirects
(`/redirect`). The API tests' reflecting
upstream (`tests.api.reflecting_upstream.ReflectingUpstream`), by contrast, keeps a
journal of parsed requests and reflects credentials back in many encodings.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

__all__ = [
    "Recorded",
    "RecordingUpstream",
    "free_port",
    "resetting_server",
    "serve_app",
    "serve_recording_upstream",
]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Recorded:
    """What the upstream received."""

    method: str
    path: str  # as sent, percent-encoding intact
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingUpstream:
    """A running recording upstream: its base URL and the requests it received, as sent."""

    base_url: str
    requests: list[Recorded] = field(default_factory=list)
    # What `/slow` saw: "started" when a request began waiting, "left" when its client
    # went away before the answer.
    slow_events: list[str] = field(default_factory=list)


def _app(upstream: RecordingUpstream) -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        upstream.requests.append(
            Recorded(
                request.method,
                request.scope["raw_path"].decode("latin-1"),
                request.url.query,
                dict(request.headers),
                body,
            )
        )
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": dict(request.headers),
                "body": body.decode("utf-8", "replace"),
            }
        )

    async def slow(request: Request) -> Response:
        upstream.slow_events.append("started")
        with anyio.move_on_after(float(request.query_params.get("seconds", "30"))):
            while not await request.is_disconnected():
                await anyio.sleep(0.02)
            upstream.slow_events.append("left")
        return JSONResponse({"slow": True})

    async def redirect(request: Request) -> Response:
        return RedirectResponse(request.query_params["to"], status_code=302)

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        return JSONResponse({"status": code}, status_code=code)

    async def hello(request: Request) -> Response:
        return JSONResponse({"hello": "world"})

    return Starlette(
        routes=[
            Route("/slow", slow),
            Route("/redirect", redirect),
            Route("/status/{code:int}", status),
            Route("/hello", hello),
            Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]
    )


@contextmanager
def serve_recording_upstream() -> Iterator[RecordingUpstream]:
    """Run the recording upstream with uvicorn in a thread; stop it on exit."""
    upstream = RecordingUpstream("")
    with serve_app(_app(upstream)) as base_url:
        upstream.base_url = base_url
        yield upstream


@contextmanager
def serve_app(app: Starlette) -> Iterator[str]:
    """Run `app` with uvicorn in a thread on a free loopback port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def resetting_server(first: bytes = b"") -> Iterator[str]:
    """A TCP server on loopback that resets every connection it accepts (after sending
    `first`, say the head and part of a body); yields its base URL."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.recv(65536)
            if first:
                connection.sendall(first)
                time.sleep(0.05)
            # SO_LINGER with a zero timeout turns close() into a TCP reset.
            connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stopping.set()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=5)
