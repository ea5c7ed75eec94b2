"""The cost of traces: calls with tracing off and on, for the cheapest call
(`current_date`), an HTTP tool against an upstream on loopback, and a one-turn model
answer from a scripted provider in a process of its own.

On means every request exports its spans (the request's and the tool call's or the
provider call's; three for the HTTP tool, its GET's too) through the batch export and the
OTLP/HTTP exporter to a collector on loopback, in a process of its own that takes the
exports without decoding them. Three measures, each against its baseline in the same run:

- per span: recording and encoding a span with the service's recorder and with the
  OpenTelemetry SDK (its tracer, batch processor and OTLP encoder);
- in-process, no server, for each of the three calls: microseconds of CPU per request
  straight into the ASGI app (the export included), apps with tracing off, on for every
  request, 10% sampled and on with nothing sampled side by side in one process, chunks of
  calls alternating between them (the steadiest of the measures: a second app with
  tracing off shows its noise). An app's export runs when it falls due, in whichever
  app's chunk is running: its steps are metered and counted for the app that recorded
  the spans. The verdict is on the median of the rounds' ratios; the ratio of all rounds
  summed is printed beside it;
- three `sidecar serve` processes (off, every request, 10% sampled) under the same load,
  rounds alternating, for `current_date` and the HTTP tool: requests per second and the
  server's CPU per request.

Target: tracing on costs at most 10% per call.
Run with `python -m tests.bench` or `python -m tests.bench.bench_tracing`.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from starlette.types import ASGIApp

from sidecar.app import create_app
from sidecar.logs import configure_logging
from sidecar.settings import Settings
from sidecar.tracing import Tracing
from sidecar.tracing.export import BatchExport
from sidecar.tracing.otlp import Encoder
from tests.bench.bench_api import BODY, post_in_process, row
from tests.bench.bench_api import measure as measure_round
from tests.bench.bench_responses import PROVIDER_KEY, fake_providers, peer, responses_body
from tests.bench.peers import serve_bare
from tests.support.kept_spans import KeptSpans
from tests.support.otlp_sink import serve_trace_sink, sink_stats
from tests.support.sidecar_process import RunningSidecar, run_sidecar
from tests.support.upstream import RecordingUpstream, serve_recording_upstream

ROUNDS = 5
TARGET = 1.10
LOG_LEVEL = "warning"
SPANS = 20_000
IN_PROCESS_CHUNKS = 60
ECHO_CALL = json.dumps({"tool": {"type": "orq:http", "key": "bench_echo"}, "arguments": {}})
SAMPLED = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
# Per app in the process: the OTEL_* variables beside the endpoint (None: tracing off).
IN_PROCESS_SETTINGS: dict[str, dict[str, str] | None] = {
    "off": None,
    "every request": {},
    "10% sampled": SAMPLED,
    "none sampled (always_off)": {"OTEL_TRACES_SAMPLER": "always_off"},
    "off, a second app": None,
}
# What a tool call's span carries.
ATTRIBUTES = {
    "gen_ai.operation.name": "execute_tool",
    "gen_ai.tool.name": "current_date",
    "gen_ai.tool.type": "function",
    "gen_ai.tool.call.id": "call_0001",
}


class _Kept(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def per_span() -> dict[str, tuple[float, float]]:
    """Microseconds to record one span (a parent and a child, attributes set) and to
    encode it as OTLP protobuf: the SDK's, then the service's."""
    kept = _Kept()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(kept, max_queue_size=SPANS * 2))
    tracer = provider.get_tracer("bench")
    started = time.perf_counter()
    for _ in range(SPANS // 2):
        with (
            tracer.start_as_current_span("POST /v1/tools/execute", attributes={"a": "b"}),
            tracer.start_as_current_span("execute_tool current_date", attributes=ATTRIBUTES),
        ):
            pass
    sdk_record = (time.perf_counter() - started) / SPANS * 1e6
    provider.shutdown()
    started = time.perf_counter()
    encode_spans(kept.spans).SerializePartialToString()
    sdk_encode = (time.perf_counter() - started) / len(kept.spans) * 1e6

    own = KeptSpans()
    tracing = Tracing(own, env={"OTEL_BSP_MAX_QUEUE_SIZE": str(SPANS * 2)})
    started = time.perf_counter()
    for _ in range(SPANS // 2):
        with (
            tracing.span("POST /v1/tools/execute", {"a": "b"}),
            tracing.span("execute_tool current_date", ATTRIBUTES),
        ):
            pass
    own_record = (time.perf_counter() - started) / SPANS * 1e6
    anyio.run(exported, tracing)
    encoder = Encoder({"service.name": "bench"}, "bench", "0")
    started = time.perf_counter()
    encoder.request(own.spans)
    own_encode = (time.perf_counter() - started) / len(own.spans) * 1e6
    return {"OpenTelemetry SDK": (sdk_record, sdk_encode), "service": (own_record, own_encode)}


async def exported(tracing: Tracing) -> None:
    """Send what `tracing` recorded outside an event loop."""
    async with tracing.exporting():
        pass


def otel_env(endpoint: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}


@dataclass(frozen=True)
class InProcessCall:
    """A call the in-process measure makes, and what each app needs for it."""

    name: str
    path: str
    body: str
    chunk_calls: int  # calls per chunk
    tool: dict[str, object] | None = None  # registered on each app first
    providers: str | None = None  # the providers file's text
    env: dict[str, str] = field(default_factory=dict)  # set while the apps start


def current_date_call() -> InProcessCall:
    """`current_date`: two spans a call (the request's and the tool call's)."""
    return InProcessCall("current_date", "/v1/tools/execute", BODY, chunk_calls=300)


def http_tool_call(upstream_url: str) -> InProcessCall:
    """An HTTP tool: three spans a call (the request's, the tool call's and its GET's)."""
    return InProcessCall(
        "an HTTP tool", "/v1/tools/execute", ECHO_CALL, chunk_calls=60, tool=echo_tool(upstream_url)
    )


def model_turn_call(provider_url: str) -> InProcessCall:
    """A one-turn model answer from the scripted provider, stored as by default: two
    spans a call (the request's and the provider call's)."""
    return InProcessCall(
        "a one-turn model answer",
        "/v1/responses",
        responses_body(),
        chunk_calls=60,
        providers=fake_providers(provider_url),
        env={"BENCH_FAKE_KEY": PROVIDER_KEY},
    )


async def in_process(endpoint: str, call: InProcessCall) -> dict[str, tuple[float, float, float]]:
    """Per setting, the median CPU microseconds per request straight into the ASGI app
    (its export included), the median of the rounds' ratios to off, and the ratio of the
    CPU summed over all rounds to off's (which counts the rare expensive round, a full
    garbage collection, say, that the median leaves out).

    Every app runs in this one process, on one loop, and the apps take turns running a
    chunk of calls, so that all see the same machine; a second app with tracing off shows
    the noise. An app's export runs on the loop when it falls due, in whichever app's
    chunk is running: its steps are metered, and their CPU is counted for the app that
    recorded the spans, not for the chunk they ran in."""
    configure_logging(LOG_LEVEL, "json")
    async with contextlib.AsyncExitStack() as stack:
        apps = {}
        exports: dict[str, _MeteredExport] = {}
        for name, env in IN_PROCESS_SETTINGS.items():
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            with _metered_export() as metered:
                apps[name] = await stack.enter_async_context(
                    _started_app(workdir, env, endpoint, call)
                )
            if metered:
                (exports[name],) = metered
            if call.tool is not None:
                await post_in_process(apps[name], "/v2/tools", json.dumps(call.tool).encode())
        for app in apps.values():
            await _chunk_cpu(app, call)  # the warm-up
        spent: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(IN_PROCESS_CHUNKS):
            before = {name: export.cpu for name, export in exports.items()}
            own: dict[str, float] = {}
            for name, app in apps.items():
                ran = {n: export.cpu for n, export in exports.items()}
                chunk = await _chunk_cpu(app, call)
                own[name] = chunk - sum(export.cpu - ran[n] for n, export in exports.items())
            for name in apps:
                exported = exports[name].cpu - before[name] if name in exports else 0.0
                spent[name].append((own[name] + exported) / call.chunk_calls * 1e6)
    off = spent["off"]
    return {
        name: (
            statistics.median(rounds),
            statistics.median(r / o for r, o in zip(rounds, off, strict=True)),
            sum(rounds) / sum(off),
        )
        for name, rounds in spent.items()
    }


class _MeteredExport(Coroutine[Any, Any, None]):
    """An app's export loop (`BatchExport`'s task), counting the CPU of its steps."""

    def __init__(self, steps: Coroutine[Any, Any, None]) -> None:
        self._steps = steps
        self.cpu = 0.0

    def send(self, value: Any) -> Any:
        started = time.process_time()
        try:
            return self._steps.send(value)
        finally:
            self.cpu += time.process_time() - started

    def throw(self, *args: Any) -> Any:
        started = time.process_time()
        try:
            return self._steps.throw(*args)
        finally:
            self.cpu += time.process_time() - started

    def close(self) -> None:
        self._steps.close()

    def __await__(self) -> Generator[Any, None, None]:
        return self._steps.__await__()


@contextlib.contextmanager
def _metered_export() -> Iterator[list[_MeteredExport]]:
    """While an app starts: its export loop, if tracing is on, metered (and listed)."""
    started: list[_MeteredExport] = []
    unmetered = BatchExport._run

    def metered_run(batch: BatchExport[Any]) -> _MeteredExport:
        started.append(_MeteredExport(unmetered(batch)))
        return started[-1]

    BatchExport._run = metered_run  # type: ignore[assignment,method-assign]
    try:
        yield started
    finally:
        BatchExport._run = unmetered  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def _started_app(
    workdir: Path, env: dict[str, str] | None, endpoint: str, call: InProcessCall
) -> AsyncIterator[ASGIApp]:
    """The service's app, started with tracing as `env` sets it (None: off)."""
    traced = {} if env is None else {**otel_env(endpoint), **env}
    started_with = {**traced, **call.env}
    os.environ.update(started_with)
    providers_file = None
    if call.providers is not None:
        providers_file = workdir / "providers.yaml"
        providers_file.write_text(call.providers)
    try:
        settings = Settings(
            state_dir=workdir,
            manifests_dir=workdir,
            log_level=LOG_LEVEL,
            outbound_allow="127.0.0.1",  # parsed as the variable is
            providers_file=providers_file,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            _unset(started_with)  # read at the start: the next app starts with its own
            yield app
    finally:
        _unset(started_with)


def _unset(variables: dict[str, str]) -> None:
    for name in variables:
        os.environ.pop(name, None)


async def _chunk_cpu(app: ASGIApp, call: InProcessCall) -> float:
    """CPU seconds over one chunk of calls."""
    body = call.body.encode()
    started = time.process_time()
    for _ in range(call.chunk_calls):
        await post_in_process(app, call.path, body)
        await anyio.sleep(0)  # a served request waits on its socket: the loop runs between
    return time.process_time() - started


def servers(endpoint: str, call: str) -> dict[str, tuple[float, float]]:
    """Per traced setting, the median ratios (to off) of req/s and of CPU per request."""
    quiet = {"SIDECAR_LOG_LEVEL": LOG_LEVEL}
    settings = {
        "off": quiet,
        "on, every request": {**quiet, **otel_env(endpoint)},
        "on, 10% sampled": {**quiet, **otel_env(endpoint), **SAMPLED},
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
                measured[name] = measure_round(url, sidecar.process.pid, body)
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


def echo_tool(upstream_url: str) -> dict[str, object]:
    """An HTTP tool that GETs the upstream's `/hello`."""
    return {
        "type": "http",
        "key": "bench_echo",
        "description": "Echo",
        "http": {"blueprint": {"url": upstream_url + "/hello"}, "arguments": {}},
    }


def register_echo(servers: Iterable[RunningSidecar], upstream: RecordingUpstream) -> str:
    """An HTTP tool on each server; the body of a call of it."""
    for server in servers:
        tool = echo_tool(upstream.base_url)
        created = httpx.post(f"{server.base_url}/v2/tools", json=tool, timeout=30)
        assert created.status_code == 200, created.text
    return ECHO_CALL


def main() -> None:
    costs = per_span()
    sdk_record, sdk_encode = costs["OpenTelemetry SDK"]
    for name, (record, encode) in costs.items():
        print(f"per span, {name}: record {record:.1f} us, encode {encode:.1f} us")
    own_record, own_encode = costs["service"]
    print(
        f"per span, service / SDK: record x{own_record / sdk_record:.3f},"
        f" encode x{own_encode / sdk_encode:.3f}"
    )
    with (
        serve_trace_sink() as endpoint,
        serve_bare() as upstream,
        peer("fake") as (provider_url, _),
    ):
        in_process_calls = [
            current_date_call(),
            http_tool_call(upstream.base_url),
            model_turn_call(provider_url),
        ]
        for measured in in_process_calls:
            chunks = anyio.run(in_process, endpoint, measured, backend_options={"use_uvloop": True})
            for name, (cpu_us, ratio, summed) in chunks.items():
                verdict = "target met" if ratio <= TARGET else "TARGET MISSED"
                verdict = "" if name.startswith("off") else f" (target <= {TARGET:.2f}): {verdict}"
                print(
                    f"in-process, {measured.name}, tracing {name}: {cpu_us:.1f} us CPU per"
                    f" request, x{ratio:.3f} of off, median of {IN_PROCESS_CHUNKS} rounds"
                    f"{verdict}; all rounds summed x{summed:.3f}"
                )
        results = {}
        for call in ("current_date", "an HTTP tool"):
            print(f"{call}:")
            results[call] = servers(endpoint, call)
        stats = sink_stats(endpoint)
    for call, by_setting in results.items():
        for name, (rate, cpu) in by_setting.items():
            verdict = "target met" if cpu <= TARGET else "TARGET MISSED"
            print(
                f"{call}, {name} / off, median of {ROUNDS} rounds: req/s x{rate:.3f},"
                f" server CPU per request x{cpu:.3f} (target <= {TARGET:.2f}): {verdict}"
            )
    print(f"the collector took {stats['exports']} exports, {stats['bytes']:,} bytes")


if __name__ == "__main__":
    main()
