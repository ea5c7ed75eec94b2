"""Upstream MCP servers as real processes on loopback, for the pool and registry tests."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["RunningUpstream", "running_upstream", "stdio_command", "wait_for_reported"]

PATHS = {"http": "/mcp", "sse": "/sse"}
LINE_MAX = 4096
REPORT_PATIENCE = 10.0


def stdio_command() -> tuple[str, list[str]]:
    """The command and arguments that start the test upstream over stdio."""
    return sys.executable, ["-m", "tests.support.mcp_upstream", "stdio"]


def _is_event(line: str, event: str) -> bool:
    return line.split(" ", 1)[0] == event


class RunningUpstream:
    """A test upstream process that tests can kill and start again on the same port.

    The process reports its events (`started`, `cancelled`: see `tests.support.mcp_upstream`)
    on its stdout, where `wait_for` reads them as they come.
    """

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.port = 0
        self._process: Process | None = None
        self._stdout: BufferedByteReceiveStream | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATHS[self.transport]}"

    async def start(self) -> None:
        command = [sys.executable, "-m", "tests.support.mcp_upstream", self.transport]
        command += ["--port", str(self.port)]
        env = {**os.environ, "UPSTREAM_EVENTS": "-"}
        process = await anyio.open_process(command, env=env, stderr=None)
        assert process.stdout is not None
        stdout = BufferedByteReceiveStream(process.stdout)
        with anyio.fail_after(20):
            line = await stdout.receive_until(b"\n", LINE_MAX)
        self.port = int(line.split()[1])
        self._process, self._stdout = process, stdout

    async def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            await self._process.wait()
            await self._process.aclose()
            self._process = self._stdout = None

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def wait_for(self, event: str) -> None:
        """Wait until the upstream reports `event` in a line not read before.

        Each report ends one wait: a second wait for `cancelled` waits for a second cancel.
        """
        assert self._stdout is not None, "the upstream is not running"
        with anyio.fail_after(REPORT_PATIENCE):
            while True:
                line = await self._stdout.receive_until(b"\n", LINE_MAX)
                if _is_event(line.decode(), event):
                    return


async def wait_for_reported(path: Path, event: str) -> None:
    """Wait until an upstream run with `UPSTREAM_EVENTS=<path>` has reported `event`.

    For an upstream over stdio, whose stdout carries the protocol: the file sends no
    signal, so this polls it.
    """
    with anyio.fail_after(REPORT_PATIENCE):
        while not path.exists() or not any(
            _is_event(line, event) for line in path.read_text().splitlines()
        ):
            await anyio.sleep(0.01)


@asynccontextmanager
async def running_upstream(transport: str) -> AsyncIterator[RunningUpstream]:
    """An upstream MCP server over `http` (Streamable HTTP) or `sse`, killed at the end."""
    upstream = RunningUpstream(transport)
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.kill()
