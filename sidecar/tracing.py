"""Traces: OpenTelemetry spans for requests, tool calls, provider calls and MCP upstream
calls, exported over OTLP (HTTP/protobuf). Off unless the standard variables ask for it.

    Tracing.from_environment(secrets)   on when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT or
                                        OTEL_TRACES_EXPORTER=otlp|console is set, off
                                        with OTEL_SDK_DISABLED=true or
                                        OTEL_TRACES_EXPORTER=none
    tracing.span(name, ...)             a span of the current context (a `with` block)
    tracing.server_span(name, headers)  a request's span, child of its `traceparent`
    tracing.start(name, ...)            a span that is not made current (a stream's)

Every other OTel setting is the SDK's own: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*, and the exporter's OTEL_EXPORTER_OTLP_* (headers,
timeout, compression, certificate).

Nothing reaches an exporter unredacted: a value is redacted when it is set, with the
secrets of the calls the code runs within (`logs.redacting`), and again at export with
the service's own secrets (provider and API keys, the database URL). Errors are
recorded as their type and redacted message, never as a traceback. The spans go to a
provider of the service's own, not the process-wide one, so a library's
instrumentation cannot export around the redactor.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sidecar.logs import call_redactor
from sidecar.redaction import Redactor

__all__ = [
    "NO_TRACING",
    "Span",
    "SpanKind",
    "Tracing",
    "TracingSettingsError",
    "exporter_from_environment",
]

Value = str | bool | int | float | Sequence[str] | Sequence[int] | Sequence[float]
# Attributes, or what makes them: a hot path passes a function, called only when tracing
# is on, so that tracing off builds nothing.
Attributes = Mapping[str, Value] | Callable[[], Mapping[str, Value]] | None
MAX_MESSAGE_CHARS = 1024
_PROPAGATOR = TraceContextTextMapPropagator()


class TracingSettingsError(ValueError):
    """An OTEL_* variable asks for what this sidecar cannot do."""


class Span:
    """A recording span: attributes and errors pass the redactor on their way in."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set(self, name: str, value: Value) -> None:
        self._span.set_attribute(name, _redacted(value))

    def rename(self, name: str) -> None:
        self._span.update_name(_redacted_text(name))

    def fail(self, code: str, message: str = "") -> None:
        """Mark the span failed: `error.type` is the code, the status says the message."""
        self._span.set_attribute("error.type", code)
        self._span.set_status(Status(StatusCode.ERROR, _redacted_text(message)))

    def end(self) -> None:
        self._span.end()


class _NoSpan(Span):
    """What a span is while tracing is off: every method does nothing."""

    __slots__ = ()

    def __init__(self) -> None:
        pass

    def set(self, name: str, value: Value) -> None:
        pass

    def rename(self, name: str) -> None:
        pass

    def fail(self, code: str, message: str = "") -> None:
        pass

    def end(self) -> None:
        pass


NO_SPAN = _NoSpan()


class _NoSpanBlock:
    """A reusable `with` block that yields `NO_SPAN`."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return NO_SPAN

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        return False


_NO_SPAN_BLOCK = _NoSpanBlock()


class Tracing:
    """The service's tracer, or nothing at all when tracing is off."""

    def __init__(self, exporter: SpanExporter | None, service_secrets: Sequence[str] = ()) -> None:
        self.enabled = exporter is not None
        self._provider: TracerProvider | None = None
        if exporter is not None:
            resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
            if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
                resource = resource.merge(Resource({"service.name": "orq-sidecar"}))
            self._provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_*
            redacting = _RedactingExporter(exporter, Redactor(list(service_secrets)))
            self._provider.add_span_processor(BatchSpanProcessor(redacting))
            self._tracer = self._provider.get_tracer("orq-sidecar")

    @classmethod
    def from_environment(cls, service_secrets: Sequence[str] = ()) -> Tracing:
        """Tracing as the standard OTEL_* variables configure it (off when they are unset)."""
        return cls(exporter_from_environment(os.environ), service_secrets)

    def span(
        self,
        name: str | Callable[[], str],
        attributes: Attributes = None,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> AbstractContextManager[Span]:
        """A span of the current context for the `with` block; an exception that leaves
        the block fails it (`error.type` is the exception's `code`, or its class)."""
        if not self.enabled:
            return _NO_SPAN_BLOCK
        return self._current(name, attributes, kind, None)

    def server_span(
        self, name: str, headers: Mapping[str, str], attributes: Attributes
    ) -> AbstractContextManager[Span]:
        """A request's span, a child of the caller's `traceparent` (W3C) when it sent one."""
        if not self.enabled:
            return _NO_SPAN_BLOCK
        parent = _PROPAGATOR.extract(carrier=headers)
        return self._current(name, attributes, SpanKind.SERVER, parent)

    def start(
        self,
        name: str | Callable[[], str],
        attributes: Attributes = None,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Span:
        """A span of the current context that is not made current: for work that outlives
        the block it began in (a provider's stream). End it with `end()`."""
        if not self.enabled:
            return NO_SPAN
        raw = self._tracer.start_span(
            _redacted_text(_made(name)), kind=kind, attributes=_all_redacted(attributes)
        )
        return Span(raw)

    def shutdown(self) -> None:
        """Export what is left and stop (at the service's close)."""
        if self._provider is not None:
            self._provider.shutdown()

    @contextmanager
    def _current(
        self,
        name: str | Callable[[], str],
        attributes: Attributes,
        kind: SpanKind,
        parent: otel_context.Context | None,
    ) -> Iterator[Span]:
        raw = self._tracer.start_span(
            _redacted_text(_made(name)),
            context=parent,
            kind=kind,
            attributes=_all_redacted(attributes),
            record_exception=False,
            set_status_on_exception=False,
        )
        span = Span(raw)
        token = otel_context.attach(trace.set_span_in_context(raw))
        try:
            yield span
        except BaseException as exc:
            code = getattr(exc, "code", None)
            span.fail(code if isinstance(code, str) else type(exc).__name__, str(exc))
            raise
        finally:
            otel_context.detach(token)
            raw.end()


NO_TRACING = Tracing(None)


def exporter_from_environment(env: Mapping[str, str]) -> SpanExporter | None:
    """The exporter the OTEL_* variables ask for, or None when tracing is off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    chosen = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if chosen == "none" or (not chosen and not endpoint):
        return None
    if chosen == "console":
        return ConsoleSpanExporter()
    if chosen not in ("", "otlp"):
        raise TracingSettingsError(
            f"OTEL_TRACES_EXPORTER={chosen}: this sidecar exports otlp or console"
        )
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise TracingSettingsError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: this sidecar sends http/protobuf"
        )
    return OTLPSpanExporter()  # endpoint, headers, timeout: the OTEL_EXPORTER_OTLP_* variables


class _RedactingExporter(SpanExporter):
    """Passes spans on with the service's secrets masked in every text they carry."""

    def __init__(self, inner: SpanExporter, redactor: Redactor) -> None:
        self._inner = inner
        self._redactor = redactor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._redactor:
            spans = [self._clean(span) for span in spans]
        return self._inner.export(spans)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def _clean(self, span: ReadableSpan) -> ReadableSpan:
        """The span, or a copy of it with the secrets masked when it holds any."""
        if not self._holds_secret(span):
            return span
        status = span.status
        if status.description:
            status = Status(status.status_code, self._redactor.redact(status.description))
        return ReadableSpan(
            name=self._redactor.redact(span.name),
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=self._attributes(span.attributes),
            events=[
                Event(event.name, self._attributes(event.attributes), event.timestamp)
                for event in span.events
            ],
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _holds_secret(self, span: ReadableSpan) -> bool:
        texts = [span.name, span.status.description or ""]
        for attributes in (span.attributes, *(event.attributes for event in span.events)):
            for value in (attributes or {}).values():
                if isinstance(value, str):
                    texts.append(value)
                elif isinstance(value, tuple | list):
                    texts.extend(v for v in value if isinstance(v, str))
        joined = "\n".join(texts)
        return self._redactor.redact(joined) != joined

    def _attributes(self, attributes: Mapping[str, object] | None) -> dict[str, Value]:
        cleaned: dict[str, Value] = {}
        for key, value in (attributes or {}).items():
            if isinstance(value, str):
                cleaned[key] = self._redactor.redact(value)
            elif isinstance(value, tuple | list):
                cleaned[key] = [
                    self._redactor.redact(v) if isinstance(v, str) else v for v in value
                ]
            elif isinstance(value, str | bool | int | float):
                cleaned[key] = value
        return cleaned


def _made(name: str | Callable[[], str]) -> str:
    return name if isinstance(name, str) else name()


def _all_redacted(attributes: Attributes) -> dict[str, Value] | None:
    made = attributes() if callable(attributes) else attributes
    if not made:
        return None
    return {key: _redacted(value) for key, value in made.items()}


def _redacted(value: Value) -> Value:
    if isinstance(value, str):
        return _redacted_text(value)
    if isinstance(value, list | tuple) and value and isinstance(value[0], str):
        return [_redacted_text(str(item)) for item in value]
    return value


def _redacted_text(text: str) -> str:
    redactor = call_redactor()
    text = text if redactor is None else redactor.redact(text)
    return text[:MAX_MESSAGE_CHARS]
