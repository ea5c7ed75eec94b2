"""A keep-alive HTTP/1.1 load generator, run in its own process: `python -m tests.bench.load`.

Raw asyncio streams on uvloop with a pre-encoded request, so the client spends far
less CPU per request than the servers it measures (an httpx client would be the
bottleneck against a bare uvicorn app). Prints one JSON object on stdout; with `--pid`,
it holds the CPU seconds each named process spent in the measured phase alone (the
warm-up's excluded), read at the phase's bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop

__all__ = ["LoadResult", "cpu_seconds", "exchange", "make_target", "run_load"]


@dataclass
class LoadResult:
    """What one load phase did."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """Where to send, and the request bytes to send each time."""

    host: str
    port: int
    request: bytes


def make_target(url: str, body: str | None) -> Target:
    """A GET (no body) or a JSON POST to `url`, encoded once."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1", "loopback only"
    assert parts.port is not None
    path = parts.path or "/"
    lines = [f"Host: {parts.hostname}:{parts.port}", "Connection: keep-alive"]
    if body is None:
        head = f"GET {path} HTTP/1.1"
        payload = b""
    else:
        head = f"POST {path} HTTP/1.1"
        payload = body.encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    request = "\r\n".join([head, *lines, "", ""]).encode() + payload
    return Target(parts.hostname, parts.port, request)


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send one pre-encoded request on a keep-alive connection; the status and the body."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length)
    return int(status_line.split(" ", 2)[1]), body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    status, _ = await exchange(reader, writer, request)
    return status == 200


async def _worker(target: Target, stop_at: float, budget: list[int], result: LoadResult) -> None:
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            started = time.perf_counter()
            ok = await _one(reader, writer, target.request)
            result.latencies.append(time.perf_counter() - started)
            result.requests += 1
            result.errors += not ok
    finally:
        writer.close()
        await writer.wait_closed()


async def _phase(target: Target, concurrency: int, seconds: float, limit: int) -> LoadResult:
    result = LoadResult()
    budget = [limit]
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(_worker(target, stop_at, budget, result) for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_load(
    target: Target,
    *,
    concurrency: int,
    warmup: float,
    seconds: float,
    limit: int,
    pids: Sequence[int] = (),
) -> dict[str, Any]:
    """A warm-up phase (discarded), then the measured phase, summarised; with the CPU
    seconds each process of `pids` spent in the measured phase."""
    await _phase(target, concurrency, warmup, limit)
    before = {pid: cpu_seconds(pid) for pid in pids}
    result = await _phase(target, concurrency, seconds, limit)
    spent = {str(pid): cpu_seconds(pid) - before[pid] for pid in pids}
    latencies = sorted(result.latencies)
    return {
        "cpu_seconds": spent,
        "requests": result.requests,
        "errors": result.errors,
        "seconds": result.seconds,
        "rps": result.requests / result.seconds,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1e3,
    }


def main() -> None:
    """Parse the command line, run the load, print the summary as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--body", help="a JSON body to POST; GET without it")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--limit", type=int, default=500_000, help="requests per phase")
    parser.add_argument(
        "--pid", type=int, action="append", default=[], help="a process whose CPU to report"
    )
    args = parser.parse_args()
    target = make_target(args.url, args.body)
    summary = uvloop.run(
        run_load(
            target,
            concurrency=args.concurrency,
            warmup=args.warmup,
            seconds=args.seconds,
            limit=args.limit,
            pids=args.pid,
        )
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
