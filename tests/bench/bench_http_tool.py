"""Per-call latency of an HTTP tool against a direct httpx call to the same upstream.

The upstream is the bare Starlette app in its own process (`GET /hello`). Sequential
calls, interleaved in rounds so drift hits every variant alike, after a warm-up:
  (a) a direct `httpx.AsyncClient` GET (the baseline);
  (b) `Executor.execute` in-process, an inline tool reference;
  (c) `Executor.execute` in-process, a registered tool referenced by key;
  (d) `POST /v1/tools/execute` of a real `sidecar serve`, against a direct GET from the
      same keep-alive client (and a POST to the bare app: the cost of the client's hop).
Target: in-process executor overhead p50 (b - a) <= 1.0 ms; (b) and (c) are profiled when
their overhead is above it.
Run with `python -m tests.bench` or `python -m tests.bench.bench_http_tool`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx

from sidecar.execution import Completed, Execution, ToolCall
from sidecar.logs import configure_logging
from sidecar.registry.definitions import definition_adapter
from sidecar.registry.references import parse_reference
from sidecar.services import open_services
from sidecar.settings import Settings
from tests.bench.peers import serve_bare
from tests.bench.profiling import print_top, profile_calls
from tests.support.sidecar_process import run_sidecar

WARMUP = 200
CALLS = 2000
ROUNDS = 10
PHASE_SECONDS = 20.0
TARGET_MS = 1.0
PROFILE_CALLS = 500
LOG_LEVEL = "warning"
BASELINE = "(a) direct httpx GET (baseline)"
INLINE = "(b) executor, inline reference"
REGISTERED = "(c) executor, registered tool by key"
DIRECT = "direct GET, same client (baseline)"
HOP = "POST bare /hello (one client hop, no tool)"
API = "(d) POST /v1/tools/execute, by key"

Call = Callable[[], Awaitable[object]]


def tool_body(upstream: str) -> dict[str, Any]:
    """The HTTP tool every variant runs: GET `<upstream>/hello`."""
    return {"type": "http", "key": "hello", "http": {"blueprint": {"url": f"{upstream}/hello"}}}


async def measure(variants: Mapping[str, Call]) -> dict[str, list[float]]:
    """Warm each variant up, then time CALLS calls of each in interleaved rounds (ms).

    The rounds stop early once PHASE_SECONDS have passed, the warm-up too.
    """
    deadline = time.perf_counter() + PHASE_SECONDS
    for call in variants.values():
        for _ in range(WARMUP):
            if time.perf_counter() > deadline:
                break
            await call()
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, call in variants.items():
            for _ in range(CALLS // ROUNDS):
                started = time.perf_counter()
                await call()
                timings[name].append((time.perf_counter() - started) * 1e3)
        if time.perf_counter() > deadline:
            break
    return timings


def p50(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    return sorted(values)[int(len(values) * 0.95)]


def report(timings: Mapping[str, list[float]], baseline: str) -> None:
    """p50/p95 of each variant and its p50 overhead over `baseline`."""
    base = p50(timings[baseline])
    for name, values in timings.items():
        extra = "" if name == baseline else f"  overhead p50 {p50(values) - base:+.3f} ms"
        print(
            f"  {name:<44} p50 {p50(values):6.3f} ms  p95 {p95(values):6.3f} ms"
            f"  (n={len(values)}){extra}"
        )


async def in_process(upstream: str) -> None:
    """Variants (a), (b) and (c); each of (b), (c) over the target is profiled."""
    configure_logging(LOG_LEVEL, "json")
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            state_dir=Path(tmp),
            manifests_dir=Path(tmp),
            outbound_allow=("127.0.0.1",),
            log_level=LOG_LEVEL,
        )
        async with open_services(settings) as services, httpx.AsyncClient() as client:
            executor = services.executor
            await services.registry.create(definition_adapter.validate_python(tool_body(upstream)))
            inline = parse_reference(tool_body(upstream))
            registered = parse_reference({"type": "http", "key": "hello"})

            async def direct() -> object:
                response = await client.get(f"{upstream}/hello")
                response.raise_for_status()
                return response.json()

            async def run_inline() -> Execution:
                return await executor.execute(ToolCall(reference=inline, arguments={}))

            async def run_registered() -> Execution:
                return await executor.execute(ToolCall(reference=registered, arguments={}))

            for check in (run_inline, run_registered):
                execution = await check()
                assert isinstance(execution.outcome, Completed), execution
            timings = await measure(
                {BASELINE: direct, INLINE: run_inline, REGISTERED: run_registered}
            )
            report(timings, BASELINE)
            overhead = p50(timings[INLINE]) - p50(timings[BASELINE])
            verdict = "target met" if overhead <= TARGET_MS else "TARGET MISSED"
            print(
                f"in-process executor overhead p50 (b - a) = {overhead:.3f} ms"
                f" (target <= {TARGET_MS:g} ms): {verdict}"
            )
            for name, call in ((INLINE, run_inline), (REGISTERED, run_registered)):
                if p50(timings[name]) - p50(timings[BASELINE]) > TARGET_MS:
                    print(f"profile of {name}, {PROFILE_CALLS} calls:")
                    profile, done = await profile_calls(call, PROFILE_CALLS)
                    print_top(profile, done)


async def through_api(sidecar_url: str, upstream: str) -> None:
    """Variant (d): the HTTP API against a direct GET, from one keep-alive client."""
    body = {"tool": {"type": "http", "key": "hello"}, "arguments": {}}
    async with httpx.AsyncClient(timeout=10) as client:
        created = await client.post(f"{sidecar_url}/v2/tools", json=tool_body(upstream))
        assert created.status_code == 200, created.text

        async def direct() -> object:
            response = await client.get(f"{upstream}/hello")
            response.raise_for_status()
            return response.json()

        async def hop() -> object:
            response = await client.post(f"{upstream}/hello", json=body)
            response.raise_for_status()
            return response.json()

        async def execute() -> object:
            response = await client.post(f"{sidecar_url}/v1/tools/execute", json=body)
            response.raise_for_status()
            return response.json()

        answer = await execute()
        assert isinstance(answer, dict), answer
        assert answer["status"] == "completed", answer
        timings = await measure({DIRECT: direct, HOP: hop, API: execute})
        report(timings, DIRECT)
        extra = p50(timings[API]) - p50(timings[HOP])
        print(f"  (d) beyond one extra client hop (d - POST bare) = {extra:+.3f} ms p50")


def main() -> None:
    """Print the latency of each variant and the overheads; profile the executor on a miss."""
    print(
        f"{WARMUP} warm-up + {CALLS} sequential calls per variant in {ROUNDS} interleaved rounds;"
        f" upstream: bare Starlette in its own process; log level {LOG_LEVEL}"
    )
    with serve_bare() as upstream:
        anyio.run(in_process, upstream.base_url, backend_options={"use_uvloop": True})
        with (
            tempfile.TemporaryDirectory() as workdir,
            run_sidecar(Path(workdir), env={"SIDECAR_LOG_LEVEL": LOG_LEVEL}) as sidecar,
        ):
            anyio.run(
                through_api,
                sidecar.base_url,
                upstream.base_url,
                backend_options={"use_uvloop": True},
            )


if __name__ == "__main__":
    main()
