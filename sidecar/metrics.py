"""Prometheus metrics: counters and one histogram, in the text exposition format.

Tool calls and HTTP requests; for the model core, provider calls (each attempt, by
outcome), fallbacks, tokens and cost, by provider and model. Model names come from
requests, so at most `MAX_MODELS` provider/model pairs get labels of their own; the
rest are counted under the model `other`.


Written here rather than with `prometheus_client`, whose locked values and label
lookups cost more per request than the rest of the request edge. Every update
happens on the event loop's thread, so plain integers serve.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

__all__ = ["CALL_SECONDS_BUCKETS", "MAX_MODELS", "Metrics"]

MAX_MODELS = 256

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
        self._models: set[tuple[str, str]] = set()
        self._model_calls: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self._fallbacks: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._tokens: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self._cost: defaultdict[tuple[str, str], float] = defaultdict(float)

    def observe_call(self, kind: str, status: str, seconds: float) -> None:
        """Count one tool call."""
        self._calls[(kind, status)] += 1
        self._call_seconds[kind].observe(seconds)

    def observe_request(self, method: str, status: int) -> None:
        """Count one HTTP request."""
        self._requests[(method, status)] += 1

    def observe_model_call(self, provider: str, model: str, outcome: str) -> None:
        """Count one provider call (an attempt): `completed` or the failure's code."""
        self._model_calls[(*self._model(provider, model), outcome)] += 1

    def observe_fallback(self, provider: str, model: str) -> None:
        """Count a run that gave up on this target for the next one."""
        self._fallbacks[self._model(provider, model)] += 1

    def observe_usage(
        self, provider: str, model: str, input_tokens: int, output_tokens: int, cost: float
    ) -> None:
        """Add one turn's tokens and cost (USD, from the configured prices)."""
        labels = self._model(provider, model)
        self._tokens[(*labels, "input")] += input_tokens
        self._tokens[(*labels, "output")] += output_tokens
        self._cost[labels] += cost

    def _model(self, provider: str, model: str) -> tuple[str, str]:
        pair = (provider, model)
        if pair in self._models:
            return pair
        if len(self._models) < MAX_MODELS:
            self._models.add(pair)
            return pair
        return (provider, "other")

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
        lines += _counter(
            "sidecar_model_calls_total",
            "Provider calls (each attempt) by provider, model and outcome.",
            {
                _labels(provider=p, model=m, outcome=o): n
                for (p, m, o), n in self._model_calls.items()
            },
        )
        lines += _counter(
            "sidecar_model_fallbacks_total",
            "Runs that fell back from this provider and model to the next.",
            {_labels(provider=p, model=m): n for (p, m), n in self._fallbacks.items()},
        )
        lines += _counter(
            "sidecar_model_tokens_total",
            "Tokens by provider, model and type (input, output).",
            {_labels(provider=p, model=m, type=t): n for (p, m, t), n in self._tokens.items()},
        )
        lines += _counter(
            "sidecar_model_cost_usd_total",
            "Cost in USD by provider and model, from the configured prices.",
            {_labels(provider=p, model=m): n for (p, m), n in self._cost.items()},
        )
        return ("\n".join(lines) + "\n").encode()


def _counter(name: str, help_text: str, values: dict[str, int] | dict[str, float]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    lines += [f"{name}{labels} {value!r}" for labels, value in sorted(values.items())]
    return lines


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
