"""The service's tracer: spans of the current context, a request's span under its
caller's, and the sink they go to when they end."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from types import TracebackType
from typing import Literal

from sidecar.redaction import Redactor
from sidecar.tracing.export import BatchExport, ConsoleExporter, OtlpHttpExporter, SpanExporter
from sidecar.tracing.otlp import Encoder
from sidecar.tracing.sampling import sampler_from_environment
from sidecar.tracing.settings import (
    SERVICE_NAME,
    BatchSettings,
    OtlpSettings,
    chosen_exporter,
    own_version,
    resource_attributes,
)
from sidecar.tracing.spans import (
    NO_SPAN,
    Attributes,
    Span,
    SpanKind,
    current_span,
    make_current,
    new_span,
    remote_parent,
    restore,
)

__all__ = ["NO_TRACING", "Tracing", "exporter_from_environment"]


class _SpanBlock:
    """A `with` block around a span: current inside (`NO_SPAN` too, which tells the
    spans under it that the trace is not sampled), failed by an exception that leaves it
    (`error.type` is the exception's `code`, or its class), ended at the exit."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> Span:
        self._token: Token[Span | None] = make_current(self._span)
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        restore(self._token)
        span = self._span
        if exc is not None:
            code = getattr(exc, "code", None)
            span.fail(code if isinstance(code, str) else type(exc).__name__, str(exc))
        span.end()
        return False


class _NoSpanBlock:
    """A reusable `with` block that yields `NO_SPAN` (tracing off, or inside a span not
    sampled) and leaves the context as it is."""

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

    def __init__(
        self,
        exporter: SpanExporter | None,
        service_secrets: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.enabled = exporter is not None
        self._batch: BatchExport | None = None
        if exporter is not None:
            self._sample = sampler_from_environment(env)
            self._batch = BatchExport(
                exporter, Redactor(list(service_secrets)), BatchSettings.from_environment(env)
            )

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
    ) -> _SpanBlock | _NoSpanBlock:
        """A span of the current context for the `with` block."""
        parent = current_span()
        if self._batch is None or parent is NO_SPAN:
            return _NO_SPAN_BLOCK
        return _SpanBlock(self._new(name, attributes, kind, parent))

    def server_span(
        self, name: str, headers: Mapping[str, str], attributes: Attributes
    ) -> _SpanBlock | _NoSpanBlock:
        """A request's span, a child of the caller's `traceparent` (W3C) when it sent one."""
        if self._batch is None:
            return _NO_SPAN_BLOCK
        return _SpanBlock(self._new(name, attributes, SpanKind.SERVER, remote_parent(headers)))

    def start(
        self,
        name: str | Callable[[], str],
        attributes: Attributes = None,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Span:
        """A span of the current context that is not made current: for work that outlives
        the block it began in (a provider's stream). End it with `end()`."""
        parent = current_span()
        if self._batch is None or parent is NO_SPAN:
            return NO_SPAN
        return self._new(name, attributes, kind, parent)

    def shutdown(self) -> None:
        """Export what is left and stop (at the service's close)."""
        if self._batch is not None:
            self._batch.shutdown()

    def _new(
        self,
        name: str | Callable[[], str],
        attributes: Attributes,
        kind: SpanKind,
        parent: Span | None,
    ) -> Span:
        assert self._batch is not None
        span = new_span(name, kind, parent, self._sample, self._batch)
        span.set_all(attributes)
        return span


NO_TRACING = Tracing(None)


def exporter_from_environment(env: Mapping[str, str]) -> SpanExporter | None:
    """The exporter the OTEL_* variables ask for, or None when tracing is off."""
    chosen = chosen_exporter(env)
    if chosen is None:
        return None
    if chosen == "console":
        return ConsoleExporter()
    encoder = Encoder(resource_attributes(env), SERVICE_NAME, own_version())
    return OtlpHttpExporter(OtlpSettings.from_environment(env), encoder)
