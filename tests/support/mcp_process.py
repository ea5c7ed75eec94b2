"""Upstream MCP servers as real processes on loopback, for the pool and registry tests."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import Process

__all__ = ["RunningUpstream", "running_upstream", "stdio_command"]

PATHS = {"http": "/mcp", "sse": "/sse"}


def stdio_command() -> tuple[str, list[str]]:
    """The command and arguments that start the test upstream over stdio."""
    return sys.executable, ["-m", "tests.support.mcp_upstream", "stdio"]


class RunningUpstream:
    """A test upstream process that tests can kill and start again on the same port."""

    def __init__(self, transport: str, cancel_log: Path) -> None:
        self.transport = transport
        self.cancel_log = cancel_log
        self.port = 0
        self._process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATHS[self.transport]}"

    async def start(self) -> None:
        command = [sys.executable, "-m", "tests.support.mcp_upstream", self.transport]
        command += ["--port", str(self.port)]
        env = {**os.environ, "UPSTREAM_CANCEL_LOG": str(self.cancel_log)}
        process = await anyio.open_process(command, env=env, stderr=None)
        assert process.stdout is not None
        line = b""
        with anyio.fail_after(20):
            while not line.endswith(b"\n"):
                line += await process.stdout.receive(1)
        self.port = int(line.split()[1])
        self._process = process

    async def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            await self._process.wait()
            await self._process.aclose()
            self._process = None

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    def cancellations(self) -> list[str]:
        """The calls the upstream saw cancelled."""
        if not self.cancel_log.exists():
            return []
        return self.cancel_log.read_text().splitlines()


@asynccontextmanager
async def running_upstream(transport: str, tmp_path: Path) -> AsyncIterator[RunningUpstream]:
    """An upstream MCP server over `http` (Streamable HTTP) or `sse`, killed at the end."""
    upstream = RunningUpstream(transport, tmp_path / f"cancelled-{transport}.log")
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.kill()
