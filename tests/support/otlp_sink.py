"""A collector for benchmarks: takes each `POST /v1/traces` and answers 200 without
decoding it, in a process of its own, so that the receiving end spends no CPU in the
process that drives the load (a decoding receiver there slows the load and skews the
measured server's CPU per request). `GET /stats` answers the exports and bytes taken.

    with serve_trace_sink() as endpoint: ...     OTEL_EXPORTER_OTLP_ENDPOINT=endpoint
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support.upstream import free_port

__all__ = ["serve_trace_sink", "sink_stats"]

_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"


class _Sink(asyncio.Protocol):
    exports = 0
    received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self._buffer[:end]).decode("latin-1").lower()
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip() == "content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            del self._buffer[: end + 4 + length]
            if head.startswith("get /stats"):
                body = json.dumps({"exports": _Sink.exports, "bytes": _Sink.received}).encode()
                self._transport.write(
                    b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
                )
                continue
            _Sink.exports += 1
            _Sink.received += length
            self._transport.write(_ANSWER)


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Sink, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


@contextmanager
def serve_trace_sink() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.support.otlp_sink", str(port)])
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(endpoint + "/stats", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the trace sink did not start") from None
            time.sleep(0.02)
    try:
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def sink_stats(endpoint: str) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(endpoint + "/stats", timeout=5).json()
    return stats


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
