"""A real `sidecar serve` process on loopback, for end-to-end tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.upstream import free_port

__all__ = ["RunningSidecar", "run_sidecar", "stop", "wait_until_answering"]


@dataclass
class RunningSidecar:
    """A started service: where it listens, where it logs, its process."""

    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def logs(self) -> str:
        """Everything the process has logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def run_sidecar(
    workdir: Path, env: Mapping[str, str] | None = None, *, args: tuple[str, ...] = ()
) -> Iterator[RunningSidecar]:
    """Start `python -m sidecar serve` in `workdir`; SIGTERM it on exit and check it stopped."""
    port = free_port()
    environment = {
        **os.environ,
        "SIDECAR_PORT": str(port),
        "SIDECAR_STATE_DIR": str(workdir / "state"),
        "SIDECAR_MANIFESTS_DIR": str(workdir / "manifests"),
        "SIDECAR_OUTBOUND_ALLOW": "127.0.0.1",
        "SIDECAR_LOG_FORMAT": "json",
        "SIDECAR_LOG_LEVEL": "info",
        **(env or {}),
    }
    log_path = workdir / f"sidecar-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "serve", *args],
            env=environment,
            cwd=workdir,
            stdout=log,
            stderr=log,
        )
    running = RunningSidecar(f"http://127.0.0.1:{port}", log_path, process)
    try:
        _wait_healthy(running)
        yield running
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process we started and wait for it; kill it if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(running: RunningSidecar) -> None:
    wait_until_answering(
        running.process, f"{running.base_url}/healthz", 30, lambda: f"sidecar\n{running.logs()}"
    )


def wait_until_answering(
    process: subprocess.Popen[bytes], url: str, seconds: float, what: Callable[[], str]
) -> None:
    """Wait until `url` answers 200; fail naming `what()` if `process` exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited early: {what()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"did not start answering {url}: {what()}")
