"""A proxied MCP tool call against a direct call to the same upstream MCP server.

The upstream is the test MCP server (`tests/support/mcp_upstream.py`) over Streamable
HTTP in its own process; the sidecar is a real `sidecar serve` in another. Sequential
calls of the upstream's `add` tool, interleaved in rounds after a warm-up:
  (a) a direct `mcp.Client` kept open across calls (the baseline);
  (b) `POST /v1/tools/execute` of the sidecar, the registered server by key (its pool
      keeps the upstream connection open), sent by a lean keep-alive HTTP client (raw
      asyncio streams, as a gateway's pooled client would be);
  (b') the same sent by an httpx client, whose own cost per request is about 1 ms;
  (c) a fresh `mcp.Client` per call, what peers that open a session per call pay.
Target: p50 (b) / (a) <= 1.5, with the absolute overhead printed; (c) / (a) printed.
Run with `python -m tests.bench` or `python -m tests.bench.bench_mcp`.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
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
from tests.support.sidecar_process import run_sidecar

LOG_LEVEL = "warning"
RATIO_TARGET = 1.5
DIRECT = "(a) direct mcp.Client, kept open (baseline)"
PROXIED = "(b) POST /v1/tools/execute, lean HTTP client"
PROXIED_HTTPX = "(b') POST /v1/tools/execute, httpx client"
FRESH = "(c) fresh mcp.Client per call"
ARGUMENTS = {"a": 2, "b": 3}
FRESH_CALLS = 100


def _timeout() -> httpx2.Timeout:
    return httpx2.Timeout(10, read=60)


async def compare(sidecar_url: str, upstream_url: str) -> None:
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
    ):
        created = await api.post(f"{sidecar_url}/v2/tools", json=server)
        assert created.status_code == 200, created.text

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

        timings = await measure({DIRECT: direct, PROXIED: proxied, PROXIED_HTTPX: proxied_httpx})
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


async def run(workdir: Path) -> None:
    async with running_upstream("http") as upstream:
        with run_sidecar(workdir, env={"SIDECAR_LOG_LEVEL": LOG_LEVEL}) as sidecar:
            await compare(sidecar.base_url, upstream.url)


def main() -> None:
    """Print p50/p95 of each variant and the ratios to the kept-open client."""
    print("sequential calls of the upstream's `add` tool, interleaved rounds after a warm-up")
    with tempfile.TemporaryDirectory() as workdir:
        anyio.run(run, Path(workdir), backend_options={"use_uvloop": True})


if __name__ == "__main__":
    main()
