"""Which traces are recorded: the standard samplers, as OTEL_TRACES_SAMPLER and
OTEL_TRACES_SAMPLER_ARG name them (default `parentbased_always_on`).

A sampler is a function of the trace id and the parent span: `traceidratio` keeps the
traces whose id's low 64 bits fall under the ratio (the SDKs' rule, so that every
service of a trace decides alike); the `parentbased_` forms follow the parent when there
is one and use the named rule for a trace's root.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sidecar.tracing.settings import TracingSettingsError
from sidecar.tracing.spans import Span

__all__ = ["Sampler", "sampler_from_environment"]

Sampler = Callable[[int, Span | None], bool]
_LOW_64_BITS = (1 << 64) - 1


def sampler_from_environment(env: Mapping[str, str]) -> Sampler:
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    root_rule = name.removeprefix("parentbased_")
    if root_rule == "always_on":
        root: Sampler = _always
    elif root_rule == "always_off":
        root = _never
    elif root_rule == "traceidratio":
        root = _ratio(_ratio_argument(env))
    else:
        raise TracingSettingsError(
            f"OTEL_TRACES_SAMPLER={name}: this sidecar samples with always_on, always_off,"
            " traceidratio, or their parentbased_ forms"
        )
    return _parent_based(root) if name.startswith("parentbased_") else root


def _ratio_argument(env: Mapping[str, str]) -> float:
    text = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or "1.0"
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise TracingSettingsError(
            f"OTEL_TRACES_SAMPLER_ARG={text}: a ratio is a number from 0 to 1"
        )
    return ratio


def _always(trace_id: int, parent: Span | None) -> bool:
    return True


def _never(trace_id: int, parent: Span | None) -> bool:
    return False


def _ratio(ratio: float) -> Sampler:
    bound = round(ratio * (1 << 64))

    def sample(trace_id: int, parent: Span | None) -> bool:
        return trace_id & _LOW_64_BITS < bound

    return sample


def _parent_based(root: Sampler) -> Sampler:
    def sample(trace_id: int, parent: Span | None) -> bool:
        return root(trace_id, parent) if parent is None else parent.sampled

    return sample
