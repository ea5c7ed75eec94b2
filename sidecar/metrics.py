"""Prometheus metrics: a few counters and one histogram, in the text exposition format.

Written here rather than with `prometheus_client`, whose locked values and label
lookups cost more per request than the rest of the request edge. Every update
happens on the event loop's thread, so plain integers serve.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

__all__ = ["CALL_SECONDS_BUCKETS", "Metrics"]

CALL_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Histogram:
    """Observations per bucket (not cumulative), their sum and count."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(CALL_SECONDS_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(CALL_SECONDS_BUCKETS, value)] += 1
        self.total += value


class Metrics:
    """The counters and the histogram the service exports at `/metrics`."""

    def __init__(self) -> None:
        self._calls: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._call_seconds: defaultdict[str, _Histogram] = defaultdict(_Histogram)
        self._requests: defaultdict[tuple[str, int], int] = defaultdict(int)

    def observe_call(self, kind: str, status: str, seconds: float) -> None:
        """Count one tool call."""
        self._calls[(kind, status)] += 1
        self._call_seconds[kind].observe(seconds)

    def observe_request(self, method: str, status: int) -> None:
        """Count one HTTP request."""
        self._requests[(method, status)] += 1

    def render(self) -> bytes:
        """The text exposition format (version 0.0.4)."""
        lines = [
            "# HELP sidecar_tool_calls_total Tool calls by tool kind and outcome status.",
            "# TYPE sidecar_tool_calls_total counter",
        ]
        for (kind, status), count in sorted(self._calls.items()):
            lines.append(f"sidecar_tool_calls_total{_labels(kind=kind, status=status)} {count}")
        lines += [
            "# HELP sidecar_tool_call_seconds Tool call duration by tool kind.",
            "# TYPE sidecar_tool_call_seconds histogram",
        ]
        for kind, histogram in sorted(self._call_seconds.items()):
            lines += _histogram_lines("sidecar_tool_call_seconds", kind, histogram)
        lines += [
            "# HELP sidecar_http_requests_total HTTP requests by method and status code.",
            "# TYPE sidecar_http_requests_total counter",
        ]
        for (method, code), count in sorted(self._requests.items()):
            labels = _labels(method=method, status=str(code))
            lines.append(f"sidecar_http_requests_total{labels} {count}")
        return ("\n".join(lines) + "\n").encode()


def _histogram_lines(name: str, kind: str, histogram: _Histogram) -> list[str]:
    lines = []
    cumulative = 0
    bounds = [*(repr(bound) for bound in CALL_SECONDS_BUCKETS), "+Inf"]
    for bound, count in zip(bounds, histogram.counts, strict=True):
        cumulative += count
        lines.append(f"{name}_bucket{_labels(kind=kind, le=bound)} {cumulative}")
    lines.append(f"{name}_sum{_labels(kind=kind)} {histogram.total!r}")
    lines.append(f"{name}_count{_labels(kind=kind)} {cumulative}")
    return lines


def _labels(**labels: str) -> str:
    body = ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
