"""The cost of traces: `POST /v1/tools/execute` with tracing off and on, for the
cheapest call (`current_date`) and for an HTTP tool against an upstream on loopback.

On means every request exports two spans (the request's and the tool call's) through
the batch processor and the OTLP/HTTP exporter to a receiver on loopback, as with a
collector beside the service. Two measures, each against the other setting in the
same run:

- in-process, no server: microseconds per request straight into the ASGI app;
- two `sidecar serve` processes (off, on) under the same load, rounds alternating:
  requests per second and the server's CPU per request (exporting included).

Target: tracing on costs at most 10% per call. With two spans a request, the budget on
`current_date` (about 100 µs of server CPU) is 5 µs a span, exported: less than the
SDK takes to create one.
Run with `python -m tests.bench` or `python -m tests.bench.bench_tracing`.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
from collections.abc import Iterable
from pathlib import Path

import anyio
import httpx

from sidecar.app import create_app
from sidecar.logs import configure_logging
from sidecar.settings import Settings
from tests.bench.bench_api import BODY, measure, per_request_us, row
from tests.support.otlp import TraceReceiver, serve_trace_receiver
from tests.support.sidecar_process import RunningSidecar, run_sidecar
from tests.support.upstream import RecordingUpstream, serve_recording_upstream

ROUNDS = 3
TARGET = 1.10
LOG_LEVEL = "warning"


def otel_env(receiver: TraceReceiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}


async def in_process(receiver: TraceReceiver) -> tuple[float, float]:
    """Microseconds per request: tracing off, then on."""
    configure_logging(LOG_LEVEL, "json")
    spent: list[float] = []
    for env in ({}, otel_env(receiver)):
        os.environ.update(env)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                settings = Settings(
                    state_dir=Path(tmp), manifests_dir=Path(tmp), log_level=LOG_LEVEL
                )
                app = create_app(settings)
                async with app.router.lifespan_context(app):
                    spent.append(await per_request_us(app, "/v1/tools/execute"))
        finally:
            for name in env:
                os.environ.pop(name)
    return spent[0], spent[1]


def servers(receiver: TraceReceiver, call: str) -> dict[str, tuple[float, float]]:
    """Per traced setting, the median ratios (to off) of req/s and of CPU per request."""
    quiet = {"SIDECAR_LOG_LEVEL": LOG_LEVEL}
    sampled = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    settings = {
        "off": quiet,
        "on, every request": {**quiet, **otel_env(receiver)},
        "on, 10% sampled": {**quiet, **otel_env(receiver), **sampled},
    }
    ratios: dict[str, list[tuple[float, float]]] = {name: [] for name in settings}
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(serve_recording_upstream())
        running = {
            name: stack.enter_context(
                run_sidecar(Path(stack.enter_context(tempfile.TemporaryDirectory())), env=env)
            )
            for name, env in settings.items()
        }
        body = BODY if call == "current_date" else register_echo(running.values(), upstream)
        for number in range(1, ROUNDS + 1):
            print(f" round {number}")
            measured = {}
            for name, sidecar in running.items():
                url = f"{sidecar.base_url}/v1/tools/execute"
                measured[name] = measure(url, sidecar.process.pid, body)
                summary, cpu = measured[name]
                print(row(f"tracing {name}", summary) + f"  {cpu:5.1f} us CPU")
            (base, base_cpu) = measured["off"]
            for name, (summary, cpu) in measured.items():
                ratios[name].append((summary["rps"] / base["rps"], cpu / base_cpu))
    return {
        name: (statistics.median(r for r, _ in pairs), statistics.median(c for _, c in pairs))
        for name, pairs in ratios.items()
        if name != "off"
    }


def register_echo(servers: Iterable[RunningSidecar], upstream: RecordingUpstream) -> str:
    """An HTTP tool on each server; the body of a call of it."""
    tool = {
        "type": "http",
        "key": "bench_echo",
        "description": "Echo",
        "http": {"blueprint": {"url": upstream.base_url + "/hello"}, "arguments": {}},
    }
    for server in servers:
        created = httpx.post(f"{server.base_url}/v2/tools", json=tool, timeout=30)
        assert created.status_code == 200, created.text
    return json.dumps({"tool": {"type": "orq:http", "key": "bench_echo"}, "arguments": {}})


def main() -> None:
    with serve_trace_receiver() as receiver:
        off_us, on_us = anyio.run(in_process, receiver, backend_options={"use_uvloop": True})
        print(
            f"in-process, no server: off {off_us:.0f} us, on {on_us:.0f} us per request"
            f" (x{on_us / off_us:.3f})"
        )
        results = {}
        for call in ("current_date", "an HTTP tool"):
            print(f"{call}:")
            results[call] = servers(receiver, call)
        spans = len(receiver.spans)
    for call, by_setting in results.items():
        for name, (rate, cpu) in by_setting.items():
            verdict = "target met" if cpu <= TARGET else "TARGET MISSED"
            print(
                f"{call}, {name} / off, median of {ROUNDS} rounds: req/s x{rate:.3f},"
                f" server CPU per request x{cpu:.3f} (target <= {TARGET:.2f}): {verdict}"
            )
    print(f"{spans} spans received")


if __name__ == "__main__":
    main()
