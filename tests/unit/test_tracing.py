"""Tracing's switches (the standard OTEL_* variables) and its redaction."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar.logs import redacting
from sidecar.redaction import Redactor
from sidecar.tracing import (
    NO_TRACING,
    Tracing,
    TracingSettingsError,
    exporter_from_environment,
)
from tests.support.secrets import assert_no_secret

SERVICE_SECRET = "svc-secret-" + "Nw5Bq1Zr8Kt3"
CALL_SECRET = "call-secret-" + "Xe2Jp7Vd4Ym9"


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
def test_an_endpoint_or_the_otlp_exporter_turns_it_on(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert isinstance(exporter_from_environment(env), OTLPSpanExporter)


def test_the_console_exporter_is_offered_for_a_look() -> None:
    assert isinstance(
        exporter_from_environment({"OTEL_TRACES_EXPORTER": "console"}), ConsoleSpanExporter
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER=zipkin"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
        ),
    ],
)
def test_what_cannot_be_done_is_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(TracingSettingsError, match=named):
        exporter_from_environment(env)


def test_off_spans_cost_nothing_and_record_nothing() -> None:
    with NO_TRACING.span("anything", {"a": "b"}) as span:
        span.set("x", 1)
        span.fail("boom", "message")
    assert NO_TRACING.start("s") is span
    assert not NO_TRACING.enabled


def test_spans_nest_and_no_secret_reaches_the_exporter() -> None:
    exported = InMemorySpanExporter()
    tracing = Tracing(exported, [SERVICE_SECRET])
    with tracing.server_span(
        "POST", {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}, {"k": "v"}
    ) as outer:
        with (
            redacting(Redactor([CALL_SECRET])),
            tracing.span(
                f"execute_tool {CALL_SECRET}", {"gen_ai.tool.call.id": f"id {CALL_SECRET}"}
            ) as inner,
        ):
            inner.set("list", [CALL_SECRET, "plain"])
            inner.fail("upstream_error", f"failed with {CALL_SECRET} and {SERVICE_SECRET}")
        outer.set("leak", f"service key {SERVICE_SECRET}")
        with pytest.raises(RuntimeError), tracing.span("raises"):
            raise RuntimeError(f"boom {SERVICE_SECRET}")
    tracing.shutdown()
    spans = {span.name: span for span in exported.get_finished_spans()}
    assert set(spans) == {"POST", "execute_tool ***", "raises"}
    post = spans["POST"]
    assert post.context is not None
    assert post.parent is not None
    assert format(post.context.trace_id, "032x") == "a" * 32  # the caller's trace
    assert format(post.parent.span_id, "016x") == "b" * 16
    inner_span = spans["execute_tool ***"]
    assert inner_span.parent is not None
    assert inner_span.parent.span_id == post.context.span_id
    assert inner_span.attributes is not None
    assert inner_span.attributes["error.type"] == "upstream_error"
    raised = spans["raises"]
    assert raised.attributes is not None
    assert raised.attributes["error.type"] == "RuntimeError"
    everything = repr(
        [
            (s.name, dict(s.attributes or {}), s.status.description, [e.name for e in s.events])
            for s in exported.get_finished_spans()
        ]
    )
    assert_no_secret(everything, CALL_SECRET, SERVICE_SECRET)
