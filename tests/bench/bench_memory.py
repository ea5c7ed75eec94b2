"""Idle resident memory (VmRSS) of `sidecar serve` against the bare Starlette app process.

Each process is read once it answers, and again after REQUESTS keep-alive requests
(`current_date` through `POST /v1/tools/execute`; a JSON POST to the bare app).
No target: the figures and the ratio are printed.
Run with `python -m tests.bench` or `python -m tests.bench.bench_memory`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import httpx

from tests.bench.peers import rss_mib, serve_bare
from tests.support.sidecar_process import run_sidecar

REQUESTS = 200
SECONDS = 20.0
LOG_LEVEL = "warning"
BODY = json.dumps({"tool": {"type": "orq:current_date"}, "arguments": {}})


def exercise(url: str) -> int:
    """POST BODY to `url` up to REQUESTS times (at most SECONDS); the number sent."""
    deadline = time.monotonic() + SECONDS
    sent = 0
    with httpx.Client(timeout=10) as client:
        while sent < REQUESTS and time.monotonic() < deadline:
            client.post(url, content=BODY).raise_for_status()
            sent += 1
    return sent


def measure_bare() -> tuple[float, float, int]:
    """RSS (MiB) of the bare app after start and after the requests, and how many were sent."""
    with serve_bare() as bare:
        started = rss_mib(bare.process.pid)
        sent = exercise(f"{bare.base_url}/hello")
        return started, rss_mib(bare.process.pid), sent


def measure_sidecar() -> tuple[float, float, int]:
    """The same for `sidecar serve` (empty state and manifests directories)."""
    with (
        tempfile.TemporaryDirectory() as workdir,
        run_sidecar(Path(workdir), env={"SIDECAR_LOG_LEVEL": LOG_LEVEL}) as sidecar,
    ):
        started = rss_mib(sidecar.process.pid)
        sent = exercise(f"{sidecar.base_url}/v1/tools/execute")
        return started, rss_mib(sidecar.process.pid), sent


def main() -> None:
    """Print both processes' RSS after start and after the requests, with ratios."""
    bare_start, bare_after, bare_sent = measure_bare()
    sidecar_start, sidecar_after, sidecar_sent = measure_sidecar()
    print(f"VmRSS from /proc/<pid>/status; SIDECAR_LOG_LEVEL={LOG_LEVEL}")
    print(f"  {'':<34} {'after start':>12} {'after requests':>16}")
    print(
        f"  {'bare Starlette (baseline)':<34} {bare_start:8.1f} MiB {bare_after:12.1f} MiB"
        f"  ({bare_sent} requests)"
    )
    print(
        f"  {'sidecar serve':<34} {sidecar_start:8.1f} MiB {sidecar_after:12.1f} MiB"
        f"  ({sidecar_sent} requests)"
    )
    print(
        f"  {'ratio sidecar / bare':<34} {sidecar_start / bare_start:8.2f} x  "
        f"{sidecar_after / bare_after:12.2f} x"
    )


if __name__ == "__main__":
    main()
