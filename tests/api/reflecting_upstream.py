"""The reflecting upstream of the API tests: a Starlette app served by uvicorn on 127.0.0.1.

It echoes every request as JSON, keeps a journal of the requests it received as parsed
(path, query parameters, JSON or text body), reflects a bearer token in common
encodings (`/reflect`) or as plain text at a chosen offset (`/pad`), answers a chosen
status (`/status/{code}`) and holds requests at a barrier until enough of them wait at
once (`/barrier/{group}/{size}`). `tests.support.upstream.RecordingUpstream`, by
contrast, keeps each request as sent on the wire (raw path, body bytes) and offers slow
answers and redirects, for the end-to-end tests.
"""

from __future__ import annotations

import base64
import html
import json
import shlex
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

__all__ = ["ReflectingUpstream", "serve_reflecting_upstream"]

BARRIER_PATIENCE = 10.0


class Barrier:
    """Releases requests of one group only once `size` of them are waiting at the same time."""

    def __init__(self) -> None:
        self._groups: dict[str, tuple[int, anyio.Event]] = {}

    async def wait(self, group: str, size: int) -> bool:
        arrived, event = self._groups.get(group) or (0, anyio.Event())
        self._groups[group] = (arrived + 1, event)
        if arrived + 1 >= size:
            event.set()
        # Bounded so a serial client fails the test instead of hanging the server forever.
        with anyio.move_on_after(BARRIER_PATIENCE):
            await event.wait()
        return event.is_set()


class Journal:
    """What the upstream received, readable from the test's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[dict[str, Any]] = []

    def record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self._seen.append(request)

    def to(self, path: str) -> list[dict[str, Any]]:
        """The requests received on `path`, oldest first."""
        with self._lock:
            return [request for request in self._seen if request["path"] == path]


def upstream_app(journal: Journal) -> Starlette:
    """Echoes every request as JSON; `/barrier/{group}/{size}` waits for company."""
    barrier = Barrier()

    async def echo(request: Request) -> JSONResponse:
        raw = await request.body()
        is_json = raw and request.headers.get("content-type", "").endswith("json")
        seen = {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "headers": dict(request.headers),
            "json": json.loads(raw) if is_json else None,
            "text": None if is_json else raw.decode("utf-8", "replace"),
        }
        journal.record(seen)
        return JSONResponse(seen)

    async def status(request: Request) -> JSONResponse:
        code = request.path_params["code"]
        return JSONResponse({"status": code}, status_code=code)

    async def reflect(request: Request) -> JSONResponse:
        """The bearer token back in the encodings a careless upstream might use."""
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        raw = token.encode()
        return JSONResponse(
            {
                "plain": token,
                "base64": base64.b64encode(raw).decode(),
                "base64url": base64.urlsafe_b64encode(raw).decode(),
                "url": quote(token, safe=""),
                "form": quote_plus(token),
                "json_text": json.dumps(token),
                "html": html.escape(token),
                "xml_named": _xml(token, "&apos;", "&quot;"),
                "xml_decimal": _xml(token, "&#39;", "&#34;"),
                "xml_hex": _xml(token, "&#x27;", "&#x22;"),
                "shell": shlex.join(["curl", "-H", f"Authorization: Bearer {token}"]),
                "repr": repr(token),
                "embedded": f"token={token};",
            }
        )

    async def pad(request: Request) -> PlainTextResponse:
        """The bearer token as plain text after `offset` filler characters."""
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        offset = int(request.query_params["offset"])
        return PlainTextResponse("." * offset + token + "." * 64)

    async def meet(request: Request) -> JSONResponse:
        group = request.path_params["group"]
        released = await barrier.wait(group, request.path_params["size"])
        return JSONResponse({"group": group, "released": released})

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            Route("/barrier/{group}/{size:int}", meet, methods=["GET"]),
            Route("/status/{code:int}", status, methods=["GET"]),
            Route("/reflect", reflect, methods=["GET", "POST"]),
            Route("/pad", pad, methods=["GET"]),
            Route("/{path:path}", echo, methods=methods),
        ]
    )


def _xml(text: str, apostrophe: str, quote_mark: str) -> str:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("'", apostrophe).replace('"', quote_mark)


@dataclass(frozen=True)
class ReflectingUpstream:
    """A running reflecting upstream on 127.0.0.1 and the journal of what it received."""

    base_url: str
    journal: Journal

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def last(self, path: str) -> dict[str, Any]:
        """The last request received on `path`."""
        received = self.journal.to(path)
        assert received, f"the upstream received nothing on {path}"
        return received[-1]


@contextmanager
def serve_reflecting_upstream() -> Iterator[ReflectingUpstream]:
    """Run the reflecting upstream in a thread of its own until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # bound and listening now: requests queue until uvicorn accepts them
    port = sock.getsockname()[1]
    journal = Journal()
    config = uvicorn.Config(
        upstream_app(journal), log_config=None, access_log=False, lifespan="off", loop="asyncio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield ReflectingUpstream(f"http://127.0.0.1:{port}", journal)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
