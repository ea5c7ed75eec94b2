"""Traces: spans for requests, tool calls, provider calls and MCP upstream calls, in
OpenTelemetry's data model, exported over OTLP (HTTP/protobuf). Off unless the standard
variables ask for it.

    Tracing.from_environment(secrets)   on when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT or
                                        OTEL_TRACES_EXPORTER=otlp|console is set, off
                                        with OTEL_SDK_DISABLED=true or
                                        OTEL_TRACES_EXPORTER=none
    tracing.span(name, ...)             a span of the current context (a `with` block)
    tracing.server_span(name, headers)  a request's span, child of its `traceparent`
    tracing.request_span(name, ...)     the same without a `with` block (the HTTP edge)
    tracing.start(name, ...)            a span that is not made current (a stream's)

The other standard variables are honoured as the OpenTelemetry SDKs do:
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*, and
the exporter's OTEL_EXPORTER_OTLP_* (headers, timeout, compression, certificates).

The recorder is the service's own rather than the OpenTelemetry SDK's: measured in one
run (`make bench`, `bench_tracing`), the SDK spends about 39 µs recording a span and
20 µs encoding it, a third of the cheapest tool call's cost; here it is about 2 µs each.

Nothing reaches an exporter unredacted: a value is redacted when it is set, with the
secrets of the calls the code runs within (`logs.redacting`), and again before export
with the service's own secrets (provider and API keys, the database URL). Errors are
recorded as their type and redacted message, never as a traceback.
"""

from sidecar.tracing.settings import TracingSettingsError
from sidecar.tracing.spans import Span, SpanKind, Value, mark_unsampled, restore_span
from sidecar.tracing.tracer import NO_TRACING, Tracing, exporter_from_environment

__all__ = [
    "NO_TRACING",
    "Span",
    "SpanKind",
    "Tracing",
    "TracingSettingsError",
    "Value",
    "exporter_from_environment",
    "mark_unsampled",
    "restore_span",
]
