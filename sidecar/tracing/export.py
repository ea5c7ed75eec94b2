"""Sending finished spans: a batch on a thread of its own, to an OTLP/HTTP collector or
to the console.

    BatchExport(exporter, redactor, settings)   add(span) from any thread; every
                                                schedule delay, or as soon as a batch is
                                                full, the thread masks the service's
                                                secrets and exports; a full queue drops
                                                spans and says how many
    OtlpHttpExporter(settings, encoder)         POST /v1/traces (protobuf, gzip when
                                                asked); 429/502/503/504 and lost
                                                connections retried with backoff within
                                                the export timeout, and no more once the
                                                service stops
    ConsoleExporter()                           one JSON line per span on stdout

The exporter's own failures are logged (status or error class, never the headers) and
never reach a request.
"""

from __future__ import annotations

import gzip
import random
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol

import httpx
import orjson

from sidecar.logs import get_logger
from sidecar.redaction import Redactor
from sidecar.tracing.otlp import Encoder
from sidecar.tracing.settings import BatchSettings, OtlpSettings, TracingSettingsError
from sidecar.tracing.spans import Span, Value, redacted

__all__ = ["BatchExport", "ConsoleExporter", "ExportFailed", "OtlpHttpExporter", "SpanExporter"]

log = get_logger("sidecar.tracing")
_RETRIED_STATUSES = frozenset({429, 502, 503, 504})
_LONGEST_BACKOFF = 32.0
_jitter = random.random  # the spread of backoffs, not a secret


class ExportFailed(Exception):
    """A batch the collector did not take; the message says why (no header, no body)."""


class SpanExporter(Protocol):
    def export(self, spans: Sequence[Span], deadline: float) -> None:
        """Send `spans`, retrying what may succeed later until `deadline` (monotonic)."""

    def stop_retrying(self) -> None:
        """Give up any wait between retries now, and retry no more (the service stops)."""

    def shutdown(self) -> None: ...


class BatchExport:
    """The queue between the service's spans and the exporter's thread."""

    def __init__(self, exporter: SpanExporter, redactor: Redactor, settings: BatchSettings) -> None:
        self._exporter = exporter
        self._redactor = redactor
        self._settings = settings
        self._queue: deque[Span] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._dropped = 0  # written by `add` only; the thread reports the increase
        self._reported = 0
        self._thread = threading.Thread(target=self._run, name="sidecar-traces", daemon=True)
        self._thread.start()

    def add(self, span: Span) -> None:
        queue = self._queue
        if len(queue) >= self._settings.max_queue:
            self._dropped += 1
            return
        queue.append(span)
        if len(queue) == self._settings.max_batch:
            self._wake.set()

    def shutdown(self) -> None:
        """Export what is queued (one attempt per batch, within the export timeout), stop."""
        self._stopping = True
        self._exporter.stop_retrying()
        self._wake.set()
        self._thread.join(self._settings.export_timeout)
        self._exporter.shutdown()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._settings.schedule_delay)
            self._wake.clear()
            self._export_queued(retry=not self._stopping)
        self._export_queued(retry=False)

    def _export_queued(self, *, retry: bool) -> None:
        queue, size = self._queue, self._settings.max_batch
        while queue:
            batch = [queue.popleft() for _ in range(min(size, len(queue)))]
            for span in batch:
                self._mask(span)
            deadline = time.monotonic() + (self._settings.export_timeout if retry else 0.0)
            try:
                self._exporter.export(batch, deadline)
            except ExportFailed as exc:
                log.warning("traces_export_failed", spans=len(batch), reason=str(exc))
            except Exception:  # an exporter's bug must not stop the thread
                log.exception("traces_export_failed", spans=len(batch))
        dropped = self._dropped
        if dropped > self._reported:
            log.warning("traces_dropped", spans=dropped - self._reported, reason="queue full")
            self._reported = dropped

    def _mask(self, span: Span) -> None:
        """Mask the service's own secrets (provider and API keys, the database URL)."""
        if not self._redactor:
            return
        redact = self._redactor.redact
        texts = [span.name, span.status_message]
        texts.extend(_texts(span.attributes.values()))
        joined = "\n".join(texts)
        if redact(joined) is joined:
            return
        span.name = redact(span.name)
        span.status_message = redact(span.status_message)
        for key, value in span.attributes.items():
            span.attributes[key] = redacted(value, self._redactor)


def _texts(values: Iterable[Value]) -> list[str]:
    found: list[str] = []
    for value in values:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, tuple | list):
            found.extend(v for v in value if isinstance(v, str))
    return found


class OtlpHttpExporter:
    """OTLP over HTTP, protobuf-encoded, to the collector the settings name."""

    def __init__(self, settings: OtlpSettings, encoder: Encoder) -> None:
        self._settings = settings
        self._encoder = encoder
        headers = {**settings.headers, "content-type": "application/x-protobuf"}
        if settings.gzip:
            headers["content-encoding"] = "gzip"
        self._client = httpx.Client(
            timeout=settings.timeout, verify=_tls_context(settings), headers=headers
        )
        self._stopped = threading.Event()

    def export(self, spans: Sequence[Span], deadline: float) -> None:
        body = self._encoder.request(spans)
        if self._settings.gzip:
            body = gzip.compress(body, compresslevel=6)
        backoff = 1.0
        while (refused := self._attempt(body)) is not None:
            retry_after, failure = refused
            wait = backoff * (0.8 + 0.4 * _jitter()) if retry_after is None else retry_after
            if time.monotonic() + wait > deadline or self._stopped.wait(wait):
                raise ExportFailed(failure)
            backoff = min(backoff * 2, _LONGEST_BACKOFF)

    def _attempt(self, body: bytes) -> tuple[float | None, str] | None:
        """None when the collector took the batch; else the wait it asked for (if any) and
        why it failed. A refusal that will not change raises `ExportFailed`."""
        try:
            answer = self._client.post(self._settings.endpoint, content=body)
        except httpx.HTTPError as exc:
            return None, type(exc).__name__
        if answer.is_success:
            return None
        failure = f"collector answered {answer.status_code}"
        if answer.status_code not in _RETRIED_STATUSES:
            raise ExportFailed(failure)
        return _retry_after(answer.headers.get("retry-after")), failure

    def stop_retrying(self) -> None:
        self._stopped.set()

    def shutdown(self) -> None:
        self._client.close()


class ConsoleExporter:
    """Each span as one JSON line on stdout: for a look while developing."""

    def export(self, spans: Sequence[Span], deadline: float) -> None:
        lines = b"".join(orjson.dumps(_as_json(span)) + b"\n" for span in spans)
        sys.stdout.write(lines.decode())
        sys.stdout.flush()

    def stop_retrying(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _as_json(span: Span) -> dict[str, object]:
    return {
        "name": span.name,
        "trace_id": format(span.trace_id, "032x"),
        "span_id": format(span.span_id, "016x"),
        "parent_span_id": format(span.parent_span_id, "016x") if span.parent_span_id else "",
        "kind": span.kind.name,
        "start_time_unix_nano": span.start_ns,
        "end_time_unix_nano": span.end_ns,
        "attributes": span.attributes,
        "status": {"code": span.status_code.name, "message": span.status_message},
    }


def _retry_after(header: str | None) -> float | None:
    if header is None or not header.strip().isdigit():
        return None
    return min(float(header.strip()), _LONGEST_BACKOFF)


def _tls_context(settings: OtlpSettings) -> ssl.SSLContext | bool:
    """The collector's CA and the client's certificate, when the variables name files."""
    if not (settings.certificate or settings.client_certificate):
        return True
    try:
        context = ssl.create_default_context(cafile=settings.certificate)
    except (OSError, ssl.SSLError) as exc:
        raise TracingSettingsError(
            f"OTEL_EXPORTER_OTLP_CERTIFICATE: cannot load {settings.certificate}: {exc}"
        ) from None
    if settings.client_certificate:
        try:
            context.load_cert_chain(settings.client_certificate, settings.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise TracingSettingsError(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and _CLIENT_KEY: cannot load"
                f" {settings.client_certificate}: {exc}"
            ) from None
    return context
