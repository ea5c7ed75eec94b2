"""The service's tracer: spans of the current context, a request's span under its
caller's, and the sink they go to when they end."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

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
    Unsampled,
    current_span,
    new_span,
    remote_parent,
)

__all__ = ["NO_TRACING", "Tracing", "exporter_from_environment"]


class Tracing:
    """The service's tracer, or nothing at all when tracing is off."""

    def __init__(
        self,
        exporter: SpanExporter[Any] | None,
        service_secrets: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.enabled = exporter is not None
        self._batch: BatchExport[Any] | None = None
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
    ) -> Span | Unsampled:
        """A span of the current context for the `with` block (`NO_SPAN` when tracing is
        off or the trace is not sampled)."""
        parent = current_span()
        if self._batch is None or parent is NO_SPAN:
            return NO_SPAN
        span = new_span(name, attributes, kind, parent, self._sample, self._batch)
        return Unsampled() if span is None else span

    def server_span(
        self, name: str, headers: Mapping[str, str], attributes: Attributes
    ) -> Span | Unsampled:
        """A request's span, a child of the caller's `traceparent` (W3C) when it sent one."""
        if self._batch is None:
            return NO_SPAN
        span = self.request_span(name, headers.get("traceparent"), headers.get("tracestate"))
        if span is None:
            return Unsampled()
        span.set_all(attributes)
        return span

    def request_span(
        self, name: str, traceparent: str | None, tracestate: str | None
    ) -> Span | None:
        """`server_span` without its `with` block, for the HTTP edge, which runs it for
        every request: None when tracing is off or the trace is not sampled. The caller
        makes the span current, or `NO_SPAN` in place of None (`mark_unsampled`)."""
        if self._batch is None:
            return None
        parent = None if traceparent is None else remote_parent(traceparent, tracestate)
        return new_span(name, None, SpanKind.SERVER, parent, self._sample, self._batch)

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
        span = new_span(name, attributes, kind, parent, self._sample, self._batch)
        return NO_SPAN if span is None else span

    @asynccontextmanager
    async def exporting(self) -> AsyncIterator[None]:
        """Export on the running event loop for the block (the service's life); what is
        left, spans recorded before the block included, is sent at its end."""
        if self._batch is None:
            yield
            return
        self._batch.start()
        try:
            yield
        finally:
            await self._batch.aclose()


NO_TRACING = Tracing(None)


def exporter_from_environment(env: Mapping[str, str]) -> SpanExporter[bytes] | None:
    """The exporter the OTEL_* variables ask for, or None when tracing is off."""
    chosen = chosen_exporter(env)
    if chosen is None:
        return None
    if chosen == "console":
        return ConsoleExporter()
    encoder = Encoder(resource_attributes(env), SERVICE_NAME, own_version())
    return OtlpHttpExporter(OtlpSettings.from_environment(env), encoder)
