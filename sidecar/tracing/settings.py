"""Tracing's configuration: the standard OTEL_* variables, read once at start.

    chosen_exporter(env)            "otlp", "console", or None (tracing off)
    OtlpSettings.from_environment   OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS,
                                    _TIMEOUT (ms), _COMPRESSION, _CERTIFICATE,
                                    _CLIENT_KEY, _CLIENT_CERTIFICATE, _PROTOCOL
    BatchSettings.from_environment  OTEL_BSP_SCHEDULE_DELAY, _MAX_QUEUE_SIZE,
                                    _MAX_EXPORT_BATCH_SIZE, _EXPORT_TIMEOUT
    resource_attributes(env)        OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES

A value this sidecar cannot use stops the start with an error naming the variable;
an exporter header's value is never repeated in it (headers carry collectors' keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Literal
from urllib.parse import unquote

__all__ = [
    "BatchSettings",
    "OtlpSettings",
    "TracingSettingsError",
    "chosen_exporter",
    "own_version",
    "resource_attributes",
]

DEFAULT_ENDPOINT = "http://localhost:4318"
TRACES_PATH = "/v1/traces"
SERVICE_NAME = "orq-sidecar"


class TracingSettingsError(ValueError):
    """An OTEL_* variable asks for what this sidecar cannot do."""


def chosen_exporter(env: Mapping[str, str]) -> Literal["otlp", "console"] | None:
    """The exporter the variables ask for: on with an OTLP endpoint or
    OTEL_TRACES_EXPORTER=otlp|console, off with none, OTEL_SDK_DISABLED=true or nothing."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    chosen = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = _either(env, "ENDPOINT")
    if chosen == "none" or (not chosen and not endpoint):
        return None
    if chosen == "console":
        return "console"
    if chosen not in ("", "otlp"):
        raise TracingSettingsError(
            f"OTEL_TRACES_EXPORTER={chosen}: this sidecar exports otlp or console"
        )
    return "otlp"


@dataclass(frozen=True)
class OtlpSettings:
    """Where and how spans are sent over OTLP/HTTP (protobuf)."""

    endpoint: str = DEFAULT_ENDPOINT + TRACES_PATH
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    gzip: bool = False
    certificate: str | None = None
    client_key: str | None = None
    client_certificate: str | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> OtlpSettings:
        protocol = _either(env, "PROTOCOL") or "http/protobuf"
        if protocol != "http/protobuf":
            raise TracingSettingsError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: this sidecar sends http/protobuf"
            )
        compression = (_either(env, "COMPRESSION") or "none").lower()
        if compression not in ("gzip", "none"):
            raise TracingSettingsError(
                f"OTEL_EXPORTER_OTLP_COMPRESSION={compression}: gzip or none"
            )
        return cls(
            endpoint=_endpoint(env),
            headers=_headers(env),
            timeout=_milliseconds(env, _variable(env, "TIMEOUT"), 10_000) / 1000,
            gzip=compression == "gzip",
            certificate=_either(env, "CERTIFICATE") or None,
            client_key=_either(env, "CLIENT_KEY") or None,
            client_certificate=_either(env, "CLIENT_CERTIFICATE") or None,
        )


@dataclass(frozen=True)
class BatchSettings:
    """How finished spans are gathered before they are sent (the batch processor's)."""

    schedule_delay: float = 5.0
    max_queue: int = 2048
    max_batch: int = 512
    export_timeout: float = 30.0

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> BatchSettings:
        max_queue = _count(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        return cls(
            schedule_delay=_milliseconds(env, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000,
            max_queue=max_queue,
            max_batch=min(_count(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512), max_queue),
            export_timeout=_milliseconds(env, "OTEL_BSP_EXPORT_TIMEOUT", 30_000) / 1000,
        )


def resource_attributes(env: Mapping[str, str]) -> dict[str, str]:
    """The service's resource: OTEL_RESOURCE_ATTRIBUTES (`key=value,...`, percent-encoded),
    `service.name` from OTEL_SERVICE_NAME over them, and the recorder's own name."""
    attributes = {
        "telemetry.sdk.name": SERVICE_NAME,
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": own_version(),
    }
    for pair in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, equals, value = pair.partition("=")
        if not pair.strip():
            continue
        if not equals or not key.strip():
            raise TracingSettingsError(
                "OTEL_RESOURCE_ATTRIBUTES: each entry is key=value, separated by commas"
            )
        attributes[unquote(key.strip())] = unquote(value.strip())
    service = env.get("OTEL_SERVICE_NAME", "").strip()
    if service:
        attributes["service.name"] = service
    attributes.setdefault("service.name", SERVICE_NAME)
    return attributes


def _either(env: Mapping[str, str], suffix: str) -> str:
    """OTEL_EXPORTER_OTLP_TRACES_<suffix>, else OTEL_EXPORTER_OTLP_<suffix>."""
    return env.get(_variable(env, suffix), "").strip()


def _variable(env: Mapping[str, str], suffix: str) -> str:
    traces = f"OTEL_EXPORTER_OTLP_TRACES_{suffix}"
    return traces if env.get(traces, "").strip() else f"OTEL_EXPORTER_OTLP_{suffix}"


def _endpoint(env: Mapping[str, str]) -> str:
    """The traces endpoint is used as given; the general one gains `/v1/traces`."""
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    endpoint = (
        traces
        or (env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINT).rstrip("/")
        + TRACES_PATH
    )
    if not endpoint.startswith(("http://", "https://")):
        name = _variable(env, "ENDPOINT")
        raise TracingSettingsError(f"{name}: an http:// or https:// URL")
    return endpoint


def _headers(env: Mapping[str, str]) -> dict[str, str]:
    name = _variable(env, "HEADERS")
    headers: dict[str, str] = {}
    for pair in env.get(name, "").split(","):
        if not pair.strip():
            continue
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise TracingSettingsError(f"{name}: each entry is key=value, separated by commas")
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def _milliseconds(env: Mapping[str, str], name: str, default: int) -> float:
    text = env.get(name, "").strip()
    if not text:
        return float(default)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise TracingSettingsError(f"{name}={text}: a number of milliseconds, 0 or more")
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise TracingSettingsError(f"{name}={text}: a whole number, 1 or more")
    return int(text)


def own_version() -> str:
    try:
        return version("orq-sidecar")
    except PackageNotFoundError:
        return "0"
