"""Throughput of `POST /v1/tools/execute` (`current_date`) against a bare Starlette app.

Both servers are separate processes with one uvicorn worker configured alike (uvloop,
httptools); the load comes from a third process (`tests.bench.load`): 16 keep-alive
connections, a 1 s warm-up, then 5 s (at most 200 000 requests). With 2 cores, the
server and the client each get one. Target: the sidecar >= 50% of the bare app's rate.
Run with `python -m tests.bench` or `python -m tests.bench.bench_api`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
from starlette.types import ASGIApp, Message

from sidecar.app import create_app
from sidecar.logs import configure_logging
from sidecar.settings import Settings
from tests.bench.peers import ROOT, bare_app, serve_bare
from tests.bench.profiling import print_top, profile_calls
from tests.support.sidecar_process import run_sidecar

LOG_LEVEL = "warning"
CONCURRENCY = 16
WARMUP_SECONDS = 1.0
SECONDS = 4.0
ROUNDS = 3
LIMIT = 200_000
TARGET = 0.5
PROFILE_CALLS = 3000
BODY = json.dumps({"tool": {"type": "orq:current_date"}, "arguments": {}})


def load(url: str, body: str, pids: Sequence[int] = ()) -> dict[str, Any]:
    """Run the load generator process against `url` and read its summary (with the CPU
    that `pids` spent in its measured phase)."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench.load",
            url,
            "--body",
            body,
            "--concurrency",
            str(CONCURRENCY),
            "--warmup",
            str(WARMUP_SECONDS),
            "--seconds",
            str(SECONDS),
            "--limit",
            str(LIMIT),
            *(f"--pid={pid}" for pid in pids),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS * 4 + 30,
        check=True,
    )
    summary: dict[str, Any] = json.loads(completed.stdout)
    return summary


def row(name: str, summary: dict[str, Any]) -> str:
    """One printed line of a load summary."""
    return (
        f"  {name:<34} {summary['rps']:8.0f} req/s  p50 {summary['p50_ms']:6.2f} ms"
        f"  p95 {summary['p95_ms']:6.2f} ms  ({summary['requests']} requests,"
        f" {summary['errors']} errors)"
    )


async def post_in_process(app: ASGIApp, path: str, body: bytes) -> None:
    """One POST straight into the ASGI app, without a server or a socket."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    statuses: list[int] = []
    answered = anyio.Event()

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await answered.wait()  # as a server does: the client is there until it has its answer
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    await app(scope, receive, send)
    assert statuses == [200], statuses


async def per_request_us(app: ASGIApp, path: str) -> float:
    """Microseconds per in-process POST, after a warm-up (no server, no profiler)."""
    for _ in range(PROFILE_CALLS // 10):
        await post_in_process(app, path, BODY.encode())
    started = time.perf_counter()
    for _ in range(PROFILE_CALLS):
        await post_in_process(app, path, BODY.encode())
    return (time.perf_counter() - started) / PROFILE_CALLS * 1e6


async def profile_app() -> None:
    """Where the sidecar's own time goes: the app profiled in-process (no uvicorn)."""
    configure_logging(LOG_LEVEL, "json")
    bare = await per_request_us(bare_app(), "/hello")
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(state_dir=Path(tmp), manifests_dir=Path(tmp), log_level=LOG_LEVEL)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            sidecar = await per_request_us(app, "/v1/tools/execute")
            print(
                f"in-process, no server: sidecar {sidecar:.0f} us, bare {bare:.0f} us per request"
            )

            async def call() -> None:
                await post_in_process(app, "/v1/tools/execute", BODY.encode())

            profile, done = await profile_calls(call, PROFILE_CALLS)
            print_top(profile, done)


def measure(url: str, pid: int, body: str = BODY) -> tuple[dict[str, Any], float]:
    """One load round and the server's CPU microseconds per request in its measured phase."""
    summary = load(url, body, [pid])
    return summary, summary["cpu_seconds"][str(pid)] / summary["requests"] * 1e6


def compare(log_level: str) -> float:
    """Alternate rounds against both servers (both up at once); return the median ratio."""
    ratios: list[float] = []
    with (
        serve_bare() as bare,
        tempfile.TemporaryDirectory() as workdir,
        run_sidecar(Path(workdir), env={"SIDECAR_LOG_LEVEL": log_level}) as sidecar,
    ):
        url = f"{sidecar.base_url}/v1/tools/execute"
        answer = httpx.post(url, content=BODY, timeout=10).json()
        assert answer["status"] == "completed", answer
        for round_number in range(1, ROUNDS + 1):
            baseline, baseline_cpu = measure(f"{bare.base_url}/hello", bare.process.pid)
            measured, measured_cpu = measure(url, sidecar.process.pid)
            ratios.append(measured["rps"] / baseline["rps"])
            print(f" round {round_number}")
            print(row("bare Starlette POST /hello", baseline) + f"  {baseline_cpu:5.1f} us CPU")
            print(row("sidecar POST /v1/tools/execute", measured) + f"  {measured_cpu:5.1f} us CPU")
    return statistics.median(ratios)


def main() -> None:
    """Print the requests/s of both servers, the ratio, and whether the target is met."""
    print(
        f"{CONCURRENCY} keep-alive connections, {WARMUP_SECONDS:g} s warm-up + {SECONDS:g} s"
        f" per round, {ROUNDS} alternating rounds; load generator in its own process;"
        " server CPU per request read from /proc"
    )
    print(f"SIDECAR_LOG_LEVEL={LOG_LEVEL} (no access log, like the bare app):")
    ratio = compare(LOG_LEVEL)
    verdict = "target met" if ratio >= TARGET else "TARGET MISSED"
    median = f"sidecar / bare, median of {ROUNDS} rounds = {ratio:.2f}"
    print(f"{median} (target >= {TARGET:.2f}): {verdict}")
    print("SIDECAR_LOG_LEVEL=info (the default: an access line and a tool line per request):")
    print(f"sidecar / bare, median of {ROUNDS} rounds = {compare('info'):.2f} (for information)")
    if ratio < TARGET:
        anyio.run(profile_app, backend_options={"use_uvloop": True})


if __name__ == "__main__":
    main()
