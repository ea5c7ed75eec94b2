"""Processes the benchmarks measure against: a bare Starlette app, and process helpers.

`python -m tests.bench.peers PORT` serves the bare app with uvicorn configured as
`sidecar serve` configures it (uvicorn's defaults: uvloop and httptools when installed,
no access log, no server header, lifespan on). It is both the API baseline and the
upstream of the HTTP-tool benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.sidecar_process import stop, wait_until_answering
from tests.support.upstream import free_port

__all__ = ["BareServer", "bare_app", "rss_mib", "serve_bare", "stop"]

ROOT = Path(__file__).resolve().parents[2]


def bare_app() -> Starlette:
    """One JSON endpoint: `/hello` answers `{"hello": "world"}` (a POST's JSON body is read)."""

    async def hello(request: Request) -> Response:
        if request.method == "POST":
            json.loads(await request.body())
        return JSONResponse({"hello": "world"})

    return Starlette(routes=[Route("/hello", hello, methods=["GET", "POST"])])


@dataclass
class BareServer:
    """A running bare app process."""

    base_url: str
    process: subprocess.Popen[bytes]


@contextmanager
def serve_bare() -> Iterator[BareServer]:
    """Start the bare app in its own process on 127.0.0.1; stop it on exit."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.peers", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    server = BareServer(f"http://127.0.0.1:{port}", process)
    try:
        _wait_ready(server)
        yield server
    finally:
        stop(process)


def _wait_ready(server: BareServer) -> None:
    wait_until_answering(server.process, f"{server.base_url}/hello", 20, lambda: "the bare app")


def rss_mib(pid: int) -> float:
    """The resident set size (VmRSS) of a process, in MiB."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def serve_like_the_sidecar(app: Starlette, port: int) -> None:
    """Serve `app` on uvicorn set up the way `sidecar serve` sets it up, until SIGTERM."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()


def main(port: int) -> None:
    """Serve the bare app until SIGTERM."""
    serve_like_the_sidecar(bare_app(), port)


if __name__ == "__main__":
    main(int(sys.argv[1]))
