"""A proxied MCP tool call against a direct call to the same upstream MCP server.

The upstream is the test MCP server (`tests/support/mcp_upstream.py`) over Streamable
HTTP in its own process; the sidecar is a real `sidecar serve` in another. Sequential
calls of the upstream's `add` tool, interleaved in rounds after a warm-up:
  (a) a direct `mcp.Client` kept open across calls (the baseline);
  (b) `POST /v1/tools/execute` of the sidecar, the registered server by key (its pool
      keeps the upstream connection open), sent by a lean keep-alive HTTP client (raw
      asyncio streams, as a gateway's pooled client would be);
  (b') the same sent by an httpx client, whose own cost per request is about 1 ms;
  (c) a fresh `mcp.Client` per call, what peers that open a session per call pay;
  (d) an `mcp.Client` kept open on the sidecar's own MCP face (`/mcp`), calling the
      server's tool as the face lists it (`bench__add`): an MCP hop in front of an MCP
      hop, what a desktop client pays;
  (e) the same through a bare relay built only with the `mcp` package
      (`tests.bench.mcp_relay`): the package's own floor for that extra hop, so that
      (d) - (e) is the sidecar's own work.
Targets: p50 (b) / (a) <= 1.5, with the absolute overhead printed; (d) / (a) <= 2.2
(`mcp-proxy`, stdio to HTTP on mcp 1.x, measured 2.3x here). (c) / (a) printed.
Run with `python -m tests.bench` or `python -m tests.bench.bench_mcp`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.bench.bench_http_tool import measure, p50, report
from tests.bench.load import exchange, make_target
from tests.bench.timing import timed
from tests.support.mcp_process import running_upstream
from tests.support.sidecar_process import run_sidecar, stop, wait_until_answering
from tests.support.upstream import free_port

ROOT = Path(__file__).resolve().parents[2]
LOG_LEVEL = "warning"
RATIO_TARGET = 1.5
DIRECT = "(a) direct mcp.Client, kept open (baseline)"
PROXIED = "(b) POST /v1/tools/execute, lean HTTP client"
PROXIED_HTTPX = "(b') POST /v1/tools/execute, httpx client"
FRESH = "(c) fresh mcp.Client per call"
FACE = "(d) mcp.Client on the sidecar's /mcp face, kept open"
FACE_TARGET = 2.2
BARE_RELAY = "(e) mcp.Client on a bare mcp-package relay, kept open"
ARGUMENTS = {"a": 2, "b": 3}
FRESH_CALLS = 100


def _timeout() -> httpx2.Timeout:
    return httpx2.Timeout(10, read=60)


async def compare(sidecar_url: str, upstream_url: str, relay_url: str) -> None:
    """Time the three variants and print the ratios."""
    server = {"type": "mcp", "key": "bench", "mcp": {"server_url": upstream_url}}
    body: dict[str, Any] = {
        "tool": {"type": "mcp", "key": "bench", "tool_id": "add"},
        "arguments": ARGUMENTS,
    }
    async with (
        httpx.AsyncClient(timeout=10) as api,
        httpx2.AsyncClient(timeout=_timeout()) as http,
        Client(streamable_http_client(upstream_url, http_client=http), cache=None) as kept,
        httpx2.AsyncClient(timeout=_timeout()) as face_http,
        Client(
            streamable_http_client(f"{sidecar_url}/mcp", http_client=face_http), cache=None
        ) as face,
        httpx2.AsyncClient(timeout=_timeout()) as relay_http,
        Client(
            streamable_http_client(f"{relay_url}/mcp", http_client=relay_http), cache=None
        ) as relay,
    ):
        created = await api.post(f"{sidecar_url}/v2/tools", json=server)
        assert created.status_code == 200, created.text

        async def through_face() -> object:
            result = await face.call_tool("bench__add", ARGUMENTS)
            assert result.structured_content == {"result": 5}, result
            return result

        async def through_bare_relay() -> object:
            result = await relay.call_tool("add", ARGUMENTS)
            assert result.structured_content == {"result": 5}, result
            return result

        async def direct() -> object:
            result = await kept.call_tool("add", ARGUMENTS)
            assert result.structured_content == {"result": 5}
            return result

        async def proxied_httpx() -> object:
            response = await api.post(f"{sidecar_url}/v1/tools/execute", json=body)
            answer = response.json()
            assert answer["result"]["structured_content"] == {"result": 5}, answer
            return answer

        target = make_target(f"{sidecar_url}/v1/tools/execute", json.dumps(body))
        streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

        async def proxied() -> object:
            if not streams:  # (again) after the server closed an idle keep-alive connection
                streams.append(await asyncio.open_connection(target.host, target.port))
            try:
                status, answer = await exchange(*streams[0], target.request)
            except (asyncio.IncompleteReadError, ConnectionError):
                streams.clear()
                return await proxied()
            assert status == 200, answer
            assert b'"structured_content":{"result":5}' in answer, answer
            return answer

        async def fresh() -> object:
            async with (
                httpx2.AsyncClient(timeout=_timeout()) as own_http,
                Client(
                    streamable_http_client(upstream_url, http_client=own_http), cache=None
                ) as client,
            ):
                return await client.call_tool("add", ARGUMENTS)

        variants = {
            DIRECT: direct,
            PROXIED: proxied,
            PROXIED_HTTPX: proxied_httpx,
            FACE: through_face,
            BARE_RELAY: through_bare_relay,
        }
        timings = await measure(variants)
        # A fresh client costs tens of milliseconds: fewer calls, after the others.
        timings[FRESH] = await timed(fresh, FRESH_CALLS)
        for _, writer in streams:
            writer.close()
    report(timings, DIRECT)
    base = p50(timings[DIRECT])
    ratio = p50(timings[PROXIED]) / base
    verdict = "met" if ratio <= RATIO_TARGET else "MISSED"
    print(
        f"  proxied / direct p50 = {ratio:.2f} (target <= {RATIO_TARGET}: {verdict}); "
        f"overhead {p50(timings[PROXIED]) - base:+.3f} ms"
    )
    print(f"  proxied with httpx / direct p50 = {p50(timings[PROXIED_HTTPX]) / base:.2f}")
    print(f"  fresh client per call / direct p50 = {p50(timings[FRESH]) / base:.2f}")
    face_ratio = p50(timings[FACE]) / base
    face_verdict = "met" if face_ratio <= FACE_TARGET else "MISSED"
    print(
        f"  MCP face / direct p50 = {face_ratio:.2f} (target <= {FACE_TARGET}: {face_verdict}); "
        f"overhead {p50(timings[FACE]) - base:+.3f} ms"
    )
    relay_p50 = p50(timings[BARE_RELAY])
    print(
        f"  bare mcp-package relay / direct p50 = {relay_p50 / base:.2f} (the package's own "
        f"hop: {relay_p50 - base:+.3f} ms); the face's own work over it: "
        f"{p50(timings[FACE]) - relay_p50:+.3f} ms"
    )


async def run(workdir: Path) -> None:
    async with running_upstream("http") as upstream:
        with (
            run_sidecar(workdir, env={"SIDECAR_LOG_LEVEL": LOG_LEVEL}) as sidecar,
            _bare_relay(upstream.url) as relay_url,
        ):
            await compare(sidecar.base_url, upstream.url, relay_url)


@contextmanager
def _bare_relay(upstream_url: str) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "tests.bench.mcp_relay", str(port), upstream_url]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(process, f"{url}/healthz", 20, lambda: "the bare MCP relay")
        yield url
    finally:
        stop(process)


def main() -> None:
    """Print p50/p95 of each variant and the ratios to the kept-open client."""
    print("sequential calls of the upstream's `add` tool, interleaved rounds after a warm-up")
    with tempfile.TemporaryDirectory() as workdir:
        anyio.run(run, Path(workdir), backend_options={"use_uvloop": True})


if __name__ == "__main__":
    main()
