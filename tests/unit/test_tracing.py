"""Tracing: the switches and settings (the standard OTEL_* variables), sampling, the
OTLP encoding (decoded with opentelemetry-proto's own classes), the batch export to a
collector on loopback, and redaction."""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import anyio
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar.logs import configure_logging, redacting
from sidecar.redaction import Redactor
from sidecar.tracing import NO_TRACING, SpanKind, Tracing, TracingSettingsError, Value
from sidecar.tracing.export import ConsoleExporter, OtlpHttpExporter
from sidecar.tracing.otlp import Encoder
from sidecar.tracing.sampling import sampler_from_environment
from sidecar.tracing.settings import (
    BatchSettings,
    OtlpSettings,
    chosen_exporter,
    resource_attributes,
)
from sidecar.tracing.spans import Span
from sidecar.tracing.tracer import exporter_from_environment
from tests.support.kept_spans import KeptSpans
from tests.support.logs import restored_logging
from tests.support.otlp import serve_trace_receiver
from tests.support.secrets import assert_no_secret
from tests.support.upstream import serve_app

SERVICE_SECRET = "svc-secret-" + "Nw5Bq1Zr8Kt3"
CALL_SECRET = "call-secret-" + "Xe2Jp7Vd4Ym9"
HEADER_SECRET = "hdr-secret-" + "Qm6Wc3Tb8Lf2"
CALLER = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}


def _close(tracing: Tracing) -> None:
    """Export what was recorded outside an event loop (the service's spans are recorded
    within `exporting()`, whose end sends what is left)."""

    async def exported() -> None:
        async with tracing.exporting():
            pass

    asyncio.run(exported())


# The switches


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_SERVICE_NAME": "x"},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
        {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
    ],
)
def test_tracing_is_off_unless_asked_for(env: dict[str, str]) -> None:
    assert exporter_from_environment(env) is None


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"},
        {"OTEL_TRACES_EXPORTER": "otlp"},
    ],
)
def test_an_endpoint_or_the_otlp_exporter_turns_it_on(env: dict[str, str]) -> None:
    assert isinstance(exporter_from_environment(env), OtlpHttpExporter)


def test_the_console_exporter_is_offered_for_a_look() -> None:
    assert chosen_exporter({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert isinstance(
        exporter_from_environment({"OTEL_TRACES_EXPORTER": "console"}), ConsoleExporter
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER=zipkin"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"},
            "OTEL_EXPORTER_OTLP_COMPRESSION=zstd",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"},
            "OTEL_EXPORTER_OTLP_TIMEOUT=soon",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_CERTIFICATE": "/no/ca"},
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER=jaeger_remote"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG=2",
        ),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "-1"}, "OTEL_BSP_MAX_QUEUE_SIZE=-1"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "novalue"}, "OTEL_RESOURCE_ATTRIBUTES"),
    ],
)
def test_what_cannot_be_done_is_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(TracingSettingsError, match=named):
        _configure(env)


def _configure(env: Mapping[str, str]) -> None:
    """Everything tracing reads from the environment at start."""
    exporter_from_environment(env)
    sampler_from_environment(env)
    BatchSettings.from_environment(env)
    resource_attributes(env)


def test_a_malformed_header_is_refused_without_repeating_its_value() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c",
        "OTEL_EXPORTER_OTLP_HEADERS": f"authorization{HEADER_SECRET}",
    }
    with pytest.raises(TracingSettingsError, match="OTEL_EXPORTER_OTLP_HEADERS") as raised:
        OtlpSettings.from_environment(env)
    assert_no_secret(str(raised.value), HEADER_SECRET)


def test_the_exporter_settings_follow_the_specification() -> None:
    general = OtlpSettings.from_environment(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/",
            "OTEL_EXPORTER_OTLP_HEADERS": "Api-Key=a%20b,x-tenant=t1",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        }
    )
    assert general.endpoint == "https://collector:4318/v1/traces"
    assert general.headers == {"api-key": "a b", "x-tenant": "t1"}
    assert general.timeout == 2.5  # milliseconds, as the specification says
    assert general.gzip
    traces = OtlpSettings.from_environment(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/custom",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "100",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "9000",
        }
    )
    assert traces.endpoint == "http://traces:4318/custom"  # the signal's own, as given
    assert traces.timeout == 0.1
    assert OtlpSettings.from_environment({}).endpoint == "http://localhost:4318/v1/traces"
    batch = BatchSettings.from_environment(
        {"OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512"}
    )
    assert (batch.max_queue, batch.max_batch, batch.schedule_delay) == (100, 100, 5.0)


def test_the_resource_names_the_service() -> None:
    assert resource_attributes({})["service.name"] == "orq-sidecar"
    named = resource_attributes(
        {
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,deployment.environment=prod%2Ceu",
            "OTEL_SERVICE_NAME": "gateway-sidecar",
        }
    )
    assert named["service.name"] == "gateway-sidecar"  # OTEL_SERVICE_NAME wins
    assert named["deployment.environment"] == "prod,eu"
    assert named["telemetry.sdk.name"] == "orq-sidecar"


# Spans and sampling


def test_off_spans_cost_nothing_and_record_nothing() -> None:
    with NO_TRACING.span("anything", {"a": "b"}) as span:
        span.set("x", 1)
        span.fail("boom", "message")
    assert NO_TRACING.start("s") is span
    assert not NO_TRACING.enabled


def test_spans_nest_under_the_callers_and_no_secret_reaches_the_exporter() -> None:
    kept = KeptSpans()
    tracing = Tracing(kept, [SERVICE_SECRET], env={})
    with tracing.server_span("POST", CALLER, {"k": "v"}) as outer:
        with (
            redacting(Redactor([CALL_SECRET])),
            tracing.span(
                lambda: f"execute_tool {CALL_SECRET}",
                lambda: {"gen_ai.tool.call.id": f"id {CALL_SECRET}"},
            ) as inner,
        ):
            inner.set("list", [CALL_SECRET, "plain"])
            inner.fail("upstream_error", f"failed with {CALL_SECRET} and {SERVICE_SECRET}")
            stream = tracing.start("chat model", kind=SpanKind.CLIENT)
        stream.set("gen_ai.usage.output_tokens", 7)
        stream.end()
        stream.set("after.end", "ignored")
        outer.set("leak", f"service key {SERVICE_SECRET}")
        with pytest.raises(RuntimeError), tracing.span("raises"):
            raise RuntimeError(f"boom {SERVICE_SECRET}")
    _close(tracing)
    assert kept.shut
    spans = kept.named()
    assert set(spans) == {"POST", "execute_tool ***", "chat model", "raises"}
    post = spans["POST"]
    assert format(post.trace_id, "032x") == "a" * 32  # the caller's trace
    assert format(post.parent_span_id, "016x") == "b" * 16
    assert post.parent_remote
    assert post.kind is SpanKind.SERVER
    inner_span = spans["execute_tool ***"]
    assert inner_span.parent_span_id == post.span_id
    assert not inner_span.parent_remote
    assert inner_span.attributes["error.type"] == "upstream_error"
    assert inner_span.status_code == 2
    assert spans["chat model"].parent_span_id == inner_span.span_id
    assert spans["chat model"].attributes == {"gen_ai.usage.output_tokens": 7}
    assert spans["raises"].attributes["error.type"] == "RuntimeError"
    assert all(span.end_ns >= span.start_ns > 0 for span in kept.spans)
    everything = repr([(s.name, s.attributes, s.status_message) for s in kept.spans])
    assert_no_secret(everything, CALL_SECRET, SERVICE_SECRET)


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-" + "0" * 32 + "-" + "b" * 16 + "-01",  # an all-zero trace id
        "00-" + "a" * 32 + "-" + "0" * 16 + "-01",  # an all-zero parent id
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",  # the forbidden version
        "00-" + "a" * 32 + "-" + "b" * 16 + "-01-extra",  # extra fields in version 00
        "00-" + "g" * 32 + "-" + "b" * 16 + "-01",
        "garbage",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(traceparent: str) -> None:
    kept = KeptSpans()
    tracing = Tracing(kept, env={})
    with tracing.server_span("GET", {"traceparent": traceparent}, None):
        pass
    _close(tracing)
    (span,) = kept.spans
    assert span.parent_span_id == 0
    assert format(span.trace_id, "032x") != "a" * 32


def test_the_tracestate_travels_with_the_trace() -> None:
    kept = KeptSpans()
    tracing = Tracing(kept, env={})
    with (
        tracing.server_span("GET", {**CALLER, "tracestate": "vendor=1,other=x"}, None),
        tracing.span("child"),
    ):
        pass
    _close(tracing)
    assert {span.trace_state for span in kept.spans} == {"vendor=1,other=x"}


def test_a_trace_not_sampled_records_nothing_beneath_it() -> None:
    kept = KeptSpans()
    env = {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}
    tracing = Tracing(kept, env=env)
    unsampled_caller = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-00"}
    with tracing.server_span("GET", unsampled_caller, None), tracing.span("child") as child:
        child.set("x", 1)
        assert tracing.start("stream").sampled is False
    with tracing.server_span("GET", CALLER, None), tracing.span("child"):
        pass
    _close(tracing)
    assert sorted(span.name for span in kept.spans) == ["GET", "child"]


def test_the_ratio_sampler_keeps_about_its_share_and_decides_alike_per_trace() -> None:
    sample = sampler_from_environment(
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    )
    ids = [random.getrandbits(128) for _ in range(20_000)]
    kept = sum(sample(trace_id, None) for trace_id in ids)
    assert 4_400 < kept < 5_600
    assert all(sample(trace_id, None) == sample(trace_id, None) for trace_id in ids[:100])
    assert not sampler_from_environment({"OTEL_TRACES_SAMPLER": "always_off"})(ids[0], None)


# The encoding


def test_the_encoding_is_otlp_as_the_official_classes_read_it() -> None:
    kept = KeptSpans()
    tracing = Tracing(kept, env={})
    with (
        tracing.server_span("POST /v1/tools/execute", {**CALLER, "tracestate": "v=1"}, None),
        tracing.span("execute_tool ünïcode", kind=SpanKind.CLIENT) as span,
    ):
        span.set("text", "häll\u00f6")
        span.set("flag", True)
        span.set("count", 200)
        span.set("negative", -5)
        span.set("ratio", 0.25)
        span.set("names", ["a", "b"])
        span.set("numbers", [1, 2])
        span.set("huge", 1 << 70)
        span.fail("upstream_error", "it failed")
    _close(tracing)
    encoder = Encoder({"service.name": "svc", "host.cores": 2}, "orq-sidecar", "9.9")
    request = ExportTraceServiceRequest.FromString(encoder.request(kept.spans))
    (resource_spans,) = request.resource_spans
    resource = {kv.key: kv.value for kv in resource_spans.resource.attributes}
    assert resource["service.name"].string_value == "svc"
    assert resource["host.cores"].int_value == 2
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("orq-sidecar", "9.9")
    decoded = {span.name: span for span in scope_spans.spans}
    child, parent = decoded["execute_tool ünïcode"], decoded["POST /v1/tools/execute"]
    assert parent.trace_id.hex() == "a" * 32
    assert parent.parent_span_id.hex() == "b" * 16
    assert parent.flags == 0x301  # sampled, the parent's remoteness known, and remote
    assert parent.kind == 2
    assert child.trace_id == parent.trace_id
    assert child.parent_span_id == parent.span_id
    assert child.flags == 0x101
    assert child.kind == 3
    assert child.trace_state == "v=1"
    values = {kv.key: kv.value for kv in child.attributes}
    assert len(values) == len(child.attributes), "an attribute written twice"
    assert values["text"].string_value == "häll\u00f6"
    assert values["flag"].bool_value is True
    assert values["count"].int_value == 200
    assert values["negative"].int_value == -5
    assert values["ratio"].double_value == 0.25
    assert [v.string_value for v in values["names"].array_value.values] == ["a", "b"]
    assert [v.int_value for v in values["numbers"].array_value.values] == [1, 2]
    assert values["huge"].string_value == str(1 << 70)
    assert values["error.type"].string_value == "upstream_error"
    assert (child.status.code, child.status.message) == (2, "it failed")
    original = kept.named()["execute_tool ünïcode"]
    assert (child.start_time_unix_nano, child.end_time_unix_nano) == (
        original.start_ns,
        original.end_ns,
    )


def test_a_value_keeps_its_type_on_the_wire_whatever_was_encoded_before() -> None:
    """Equal values of different types (1, True, 1.0, "1") are different attributes."""
    kept = KeptSpans()
    tracing = Tracing(kept, env={})
    values: list[Value] = [1, True, 1.0, "1", "1", ("1", "2"), 1, True]
    for number, value in enumerate(values):
        with tracing.span(f"span {number}") as span:
            span.set("same.key", value)
    _close(tracing)
    encoder = Encoder({"service.name": "svc"}, "orq-sidecar", "9.9")
    request = ExportTraceServiceRequest.FromString(encoder.request(kept.spans))
    decoded = {
        span.name: span.attributes[0].value
        for span in request.resource_spans[0].scope_spans[0].spans
    }
    read = [decoded[f"span {number}"] for number in range(len(values))]
    assert [value.WhichOneof("value") for value in read] == [
        "int_value", "bool_value", "double_value", "string_value", "string_value",
        "array_value", "int_value", "bool_value",
    ]  # fmt: skip
    assert [read[0].int_value, read[1].bool_value, read[2].double_value] == [1, True, 1.0]
    assert read[3].string_value == read[4].string_value == "1"
    assert [item.string_value for item in read[5].array_value.values] == ["1", "2"]


# The export


@pytest.fixture
def json_logs() -> Iterator[None]:
    with restored_logging():
        configure_logging(level="info", fmt="json")
        yield


def _logged(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


@contextmanager
def collector(answers: list[tuple[int, dict[str, str]]]) -> Iterator[tuple[str, list[bytes]]]:
    """A collector that gives the scripted answers in turn (then 200s), keeping bodies."""
    bodies: list[bytes] = []

    async def traces(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        bodies.append(body)
        status, headers = answers.pop(0) if answers else (200, {})
        return Response(b"", status_code=status, headers=headers)

    with serve_app(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])) as url:
        yield url, bodies


def _names(bodies: list[bytes]) -> list[str]:
    names: list[str] = []
    for body in bodies:
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            for scope_spans in resource_spans.scope_spans:
                names.extend(span.name for span in scope_spans.spans)
    return names


@pytest.mark.anyio
async def test_a_busy_collector_is_retried_as_it_asks() -> None:
    with collector([(503, {"retry-after": "0"}), (429, {"retry-after": "0"})]) as (url, bodies):
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_BSP_SCHEDULE_DELAY": "20"}
        tracing = Tracing(exporter_from_environment(env), env=env)
        async with tracing.exporting():
            with tracing.span("retried"):
                pass
            await _waited_for(lambda: len(bodies) >= 3)
    assert _names(bodies) == ["retried"] * 3


@pytest.mark.anyio
@pytest.mark.usefixtures("json_logs")
async def test_a_refused_export_is_logged_and_the_service_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with collector([(400, {})]) as (url, bodies):
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": url,
            "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {HEADER_SECRET}",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_BSP_SCHEDULE_DELAY": "20",
        }
        tracing = Tracing(exporter_from_environment(env), env=env)
        async with tracing.exporting():
            with tracing.span("refused"):
                pass
            await _waited_for(lambda: len(bodies) >= 1)
            with tracing.span("taken"):
                pass
    assert _names(bodies) == ["refused", "taken"]  # not retried; the next batch goes
    logged = _logged(capsys)
    failed = [line for line in logged if line["event"] == "traces_export_failed"]
    assert [(line["spans"], line["reason"]) for line in failed] == [(1, "collector answered 400")]
    assert_no_secret(json.dumps(logged), HEADER_SECRET)


@pytest.mark.anyio
@pytest.mark.usefixtures("json_logs")
async def test_shutdown_gives_up_waiting_on_a_busy_collector(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with collector([(503, {"retry-after": "20"})] * 3) as (url, bodies):
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_BSP_SCHEDULE_DELAY": "20"}
        tracing = Tracing(exporter_from_environment(env), env=env)
        async with tracing.exporting():
            with tracing.span("waiting"):
                pass
            await _waited_for(lambda: len(bodies) >= 1)  # the collector said: again in 20 s
            started = time.monotonic()
        assert time.monotonic() - started < 5
    failed = [line for line in _logged(capsys) if line["event"] == "traces_export_failed"]
    assert [line["reason"] for line in failed] == ["collector answered 503"]


@pytest.mark.anyio
async def test_a_full_batch_from_another_thread_goes_at_once_the_rest_on_schedule() -> None:
    with collector([]) as (url, bodies):
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": url,
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "300",
        }
        tracing = Tracing(exporter_from_environment(env), env=env)
        async with tracing.exporting():

            def record() -> None:
                for number in range(301):
                    with tracing.span(f"span {number}"):
                        pass

            await anyio.to_thread.run_sync(record)
            # The schedule is a minute away: the full batch woke the export, and the
            # span beyond it waits for the schedule (here: the close).
            await _waited_for(lambda: len(bodies) >= 1)
            await anyio.sleep(0.2)
            assert _names(bodies) == [f"span {number}" for number in range(300)]
    assert _names(bodies[1:]) == ["span 300"]


class ArrivingDuringExport(KeptSpans):
    """An exporter during each of whose exports a call ends and records a span (as
    calls do while a batch is on its way), keeping the size of each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.tracing = NO_TRACING
        self.batches: list[int] = []

    async def export(self, spans: Sequence[Span], deadline: float) -> None:
        self.batches.append(len(spans))
        await anyio.sleep(0.005)  # the round trip
        with self.tracing.span("a call that ended meanwhile"):
            pass
        await super().export(spans, deadline)


@pytest.mark.anyio
async def test_spans_that_come_during_a_scheduled_export_wait_for_the_next_schedule() -> None:
    exporter = ArrivingDuringExport()
    tracing = Tracing(exporter, env={"OTEL_BSP_SCHEDULE_DELAY": "100"})
    exporter.tracing = tracing
    async with tracing.exporting():
        for number in range(3):
            with tracing.span(f"span {number}"):
                pass
        await anyio.sleep(0.35)  # three schedules at most
    # One export a schedule (and one at the close), not one after another for as long
    # as spans keep coming.
    assert 2 <= len(exporter.batches) <= 5, exporter.batches
    assert exporter.batches[0] == 3
    assert set(exporter.batches[1:]) == {1}  # the span that came during the one before


def test_the_console_shows_each_span_as_a_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"OTEL_TRACES_EXPORTER": "console"}
    tracing = Tracing(exporter_from_environment(env), env=env)
    with tracing.server_span("GET", CALLER, {"url.path": "/healthz"}):
        pass
    _close(tracing)
    (line,) = capsys.readouterr().out.splitlines()
    shown = json.loads(line)
    assert shown["name"] == "GET"
    assert shown["trace_id"] == "a" * 32
    assert shown["parent_span_id"] == "b" * 16
    assert shown["kind"] == "SERVER"
    assert shown["attributes"] == {"url.path": "/healthz"}


def test_an_unreachable_collector_does_not_hold_up_shutdown() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_BSP_EXPORT_TIMEOUT": "500"}
    tracing = Tracing(exporter_from_environment(env), env=env)
    with tracing.span("lost"):
        pass
    finished = threading.Event()

    def shut() -> None:
        _close(tracing)
        finished.set()

    threading.Thread(target=shut, daemon=True).start()
    assert finished.wait(10)


@pytest.mark.usefixtures("json_logs")
def test_a_full_queue_drops_spans_and_says_how_many(capsys: pytest.CaptureFixture[str]) -> None:
    kept = KeptSpans()
    env = {"OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    tracing = Tracing(kept, env=env)
    for number in range(25):
        with tracing.span(f"span {number}"):
            pass
    _close(tracing)
    assert [span.name for span in kept.spans] == [f"span {number}" for number in range(10)]
    dropped = [line for line in _logged(capsys) if line["event"] == "traces_dropped"]
    assert [line["spans"] for line in dropped] == [15]


class EncodesBadly(KeptSpans):
    """An exporter whose encoding fails for one span."""

    @staticmethod
    def encode(span: Span) -> Span:
        if span.name == "the bad one":
            raise ValueError(f"cannot encode {span.name}")
        return span


@pytest.mark.usefixtures("json_logs")
def test_a_span_the_exporter_cannot_encode_is_dropped_and_the_call_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kept = EncodesBadly()
    tracing = Tracing(kept, env={})
    ran = []
    names = ["before", "the bad one", "between", "the bad one", "after"]
    for name in names:
        with tracing.span(name):
            ran.append(name)
    _close(tracing)
    assert ran == names
    assert [span.name for span in kept.spans] == ["before", "between", "after"]
    logged = _logged(capsys)
    # The first failure is logged with its traceback, and every one is counted.
    failed = [line for line in logged if line["event"] == "traces_encoding_failed"]
    assert len(failed) == 1
    assert "cannot encode the bad one" in str(failed[0])
    dropped = [line for line in logged if line["event"] == "traces_dropped"]
    assert [(line["spans"], line["reason"]) for line in dropped] == [(2, "encoding failed")]


def test_a_finished_span_waits_for_its_batch_encoded_not_as_objects() -> None:
    """A span's objects are freed when it ends: the queue holds its encoding, bytes,
    which the garbage collector does not track (a queue of live spans made it run often)."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    tracing = Tracing(exporter_from_environment(env), env=env)
    gc.collect()
    gc.disable()
    try:
        for number in range(50):
            with (
                tracing.span("POST", {"call": f"call {number}"}),
                tracing.span("execute_tool current_date", {"n": number}),
            ):
                pass
        alive = [item for item in gc.get_objects() if isinstance(item, Span)]
    finally:
        gc.enable()
    assert [span for span in alive if span.name] == []  # NO_SPAN, nameless, is not one
    queued = tracing._batch._queue if tracing._batch is not None else ()
    assert len(queued) == 100
    assert {type(item) for item in queued} == {bytes}


def test_spans_reach_a_real_receiver_and_shutdown_sends_the_rest() -> None:
    with serve_trace_receiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "unit"}
        tracing = Tracing(exporter_from_environment(env), [SERVICE_SECRET], env=env)
        with tracing.server_span("POST", CALLER, {"key": f"k {SERVICE_SECRET}"}):
            pass
        _close(tracing)  # the schedule delay (5 s) has not come: the close sends it
        (span,) = receiver.spans
        assert span.service_name == "unit"
        assert span.attributes == {"key": "k ***"}
        assert_no_secret(receiver.raw(), SERVICE_SECRET)


async def _waited_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await anyio.sleep(0.01)
