"""Prometheus metrics, in a registry of the service's own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    """The counters and histograms the service exports at `/metrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._calls = Counter(
            "sidecar_tool_calls",
            "Tool calls by tool kind and outcome status.",
            ["kind", "status"],
            registry=self.registry,
        )
        self._call_seconds = Histogram(
            "sidecar_tool_call_seconds",
            "Tool call duration by tool kind.",
            ["kind"],
            registry=self.registry,
        )
        self._requests = Counter(
            "sidecar_http_requests",
            "HTTP requests by method and status code.",
            ["method", "status"],
            registry=self.registry,
        )

        # `labels()` costs microseconds per call; the children are few, so keep them.
        self._call_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._request_children: dict[tuple[str, int], Counter] = {}

    def observe_call(self, kind: str, status: str, seconds: float) -> None:
        """Count one tool call."""
        children = self._call_children.get((kind, status))
        if children is None:
            children = (self._calls.labels(kind, status), self._call_seconds.labels(kind))
            self._call_children[(kind, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_request(self, method: str, status: int) -> None:
        """Count one HTTP request."""
        child = self._request_children.get((method, status))
        if child is None:
            child = self._requests.labels(method, str(status))
            self._request_children[(method, status)] = child
        child.inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
