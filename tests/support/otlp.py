"""An OTLP/HTTP trace receiver on loopback: what an OpenTelemetry collector is to the
sidecar. It decodes each `POST /v1/traces` (protobuf) and keeps the raw bodies too, so
tests can look for secrets in exactly what left the service."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.upstream import serve_app

__all__ = ["ReceivedSpan", "TraceReceiver", "serve_trace_receiver"]


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    service_name: str


@dataclass
class TraceReceiver:
    endpoint: str = ""
    bodies: list[bytes] = field(default_factory=list)
    spans: list[ReceivedSpan] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes=_attributes(span.attributes),
                            status_code=span.status.code,
                            status_message=span.status.message,
                            service_name=str(resource.get("service.name", "")),
                        )
                    )
        with self._lock:
            self.bodies.append(body)
            self.spans.extend(found)

    def named(self, prefix: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.name.startswith(prefix)]

    def wait_for(self, prefix: str, count: int = 1, timeout: float = 20.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while len(self.named(prefix)) < count:
            if time.monotonic() > deadline:
                names = [span.name for span in self.spans]
                raise TimeoutError(f"no {count} span(s) named {prefix!r}; received {names}")
            time.sleep(0.05)
        return self.named(prefix)

    def raw(self) -> str:
        with self._lock:
            return b"".join(self.bodies).decode("latin-1")


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


@contextmanager
def serve_trace_receiver() -> Iterator[TraceReceiver]:
    receiver = TraceReceiver()

    async def traces(request: Request) -> Response:
        receiver.take(await request.body())
        answer = ExportTraceServiceResponse().SerializeToString()
        return Response(answer, media_type="application/x-protobuf")

    app = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    with serve_app(app) as base_url:
        receiver.endpoint = base_url
        yield receiver
