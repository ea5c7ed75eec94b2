"""The `/metrics` exposition, read back by Prometheus's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from sidecar.metrics import Metrics


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_and_histogram_parse_as_prometheus_text() -> None:
    metrics = Metrics()
    metrics.observe_call("http", "completed", 0.003)
    metrics.observe_call("http", "completed", 0.2)
    metrics.observe_call("http", "failed", 700.0)
    metrics.observe_request("POST", 200)
    samples = _samples(metrics)

    assert samples[("sidecar_tool_calls_total", (("kind", "http"), ("status", "completed")))] == 2
    assert samples[("sidecar_tool_calls_total", (("kind", "http"), ("status", "failed")))] == 1
    bucket = "sidecar_tool_call_seconds_bucket"
    assert samples[(bucket, (("kind", "http"), ("le", "0.005")))] == 1
    assert samples[(bucket, (("kind", "http"), ("le", "0.25")))] == 2
    assert samples[(bucket, (("kind", "http"), ("le", "60.0")))] == 2
    assert samples[(bucket, (("kind", "http"), ("le", "+Inf")))] == 3
    assert samples[("sidecar_tool_call_seconds_count", (("kind", "http"),))] == 3
    assert abs(samples[("sidecar_tool_call_seconds_sum", (("kind", "http"),))] - 700.203) < 1e-9
    assert samples[("sidecar_http_requests_total", (("method", "POST"), ("status", "200")))] == 1


def test_a_value_on_a_bucket_bound_counts_in_that_bucket() -> None:
    metrics = Metrics()
    metrics.observe_call("code", "completed", 0.01)
    samples = _samples(metrics)
    assert samples[("sidecar_tool_call_seconds_bucket", (("kind", "code"), ("le", "0.005")))] == 0
    assert samples[("sidecar_tool_call_seconds_bucket", (("kind", "code"), ("le", "0.01")))] == 1


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.observe_call('we"ird\\kind\n', "completed", 0.1)
    families = list(text_string_to_metric_families(metrics.render().decode()))
    kinds = {sample.labels.get("kind") for family in families for sample in family.samples}
    assert 'we"ird\\kind\n' in kinds


def test_an_empty_registry_still_renders_valid_text() -> None:
    families = list(text_string_to_metric_families(Metrics().render().decode()))
    assert {family.name for family in families} >= {"sidecar_tool_calls", "sidecar_http_requests"}
