"""Operator routes: `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from sidecar.api.wire import json_response
from sidecar.services import services_from, started_services

__all__ = ["healthz", "metrics", "readyz"]


async def healthz(request: Request) -> Response:
    """The process is up."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """The stores answer and the tools are loaded; 503 while starting or shutting down."""
    services = started_services(request)
    if services is None:
        return json_response({"status": "starting"}, status=503)
    if services.drain.draining:
        return json_response({"status": "shutting_down"}, status=503)
    checks = await services.readiness()
    ready = all(check["ok"] for check in checks.values())
    return json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    services = services_from(request)
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4")
