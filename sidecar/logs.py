"""Structured logs (JSON or console) on stderr, redacted as the final step.

Every line is rendered first and redacted last, so no processor or formatter can
reintroduce a secret: the call's secrets come from a context variable set by the
executor for the duration of a call, the service's own secrets (API keys,
encryption key) are masked always.

Logging is process-wide by nature: `configure_logging` sets the one pipeline every
logger shares, so loggers can be cached and a disabled level costs one comparison.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from contextvars import ContextVar, Token
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from sidecar.redaction import Redactor

__all__ = [
    "bind_request_id",
    "call_redactor",
    "configure_logging",
    "get_logger",
    "info_enabled",
    "redacting",
]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}
_call_redactor: ContextVar[Redactor | None] = ContextVar("call_redactor", default=None)
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class redacting:
    """Mask `redactor`'s secrets in every log line written in this context.

    Nested inside another `redacting` (a tool call run within a model response), the
    lines are masked for the secrets of both.
    """

    __slots__ = ("_redactor", "_token")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._token: Token[Redactor | None] | None = None

    def __enter__(self) -> None:
        if self._redactor:  # a call without secrets has nothing to mask
            outer = _call_redactor.get()
            combined = self._redactor if outer is None else outer | self._redactor
            self._token = _call_redactor.set(combined)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _call_redactor.reset(self._token)


# The secrets of the calls this context runs within (`redacting`), if any. The context
# variable's own method: spans ask on every attribute they set.
call_redactor: Callable[[], Redactor | None] = _call_redactor.get


def bind_request_id(request_id: str) -> None:
    """Attach the request id to every log line written while handling this request."""
    _request_id.set(request_id)


def _json_renderer() -> Processor:
    # orjson renders a line in a tenth of the time of `json`, and every request
    # writes two lines at the default level.
    return structlog.processors.JSONRenderer(serializer=orjson.dumps)


class _StderrLogger:
    """Writes rendered lines to whatever `sys.stderr` is at the time."""

    def __init__(self, name: str | None) -> None:
        self.name = name

    def msg(self, line: str) -> None:
        sys.stderr.write(line + "\n")

    debug = info = warning = error = critical = exception = msg


def _stderr_logger(*args: Any) -> _StderrLogger:
    return _StderrLogger(str(args[0]) if args else None)


class _Pipeline:
    """The process's log pipeline; `configure_logging` updates it in place."""

    def __init__(self) -> None:
        self.level = logging.INFO
        self.inner: Processor = _json_renderer()
        self.service_secrets = Redactor.empty()

    def annotate(self, logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        event.setdefault("level", "warning" if method == "warn" else method)
        name = getattr(logger, "name", None)
        if name:
            event.setdefault("logger", name)
        request_id = _request_id.get()
        if request_id is not None:
            event.setdefault("request_id", request_id)
        return event

    def render(self, logger: WrappedLogger, method: str, event: EventDict) -> str:
        line = self.inner(logger, method, event)
        text = line.decode() if isinstance(line, bytes) else str(line)
        call = _call_redactor.get()
        if call:
            text = call.redact(text)
        return self.service_secrets.redact(text) if self.service_secrets else text


# One pipeline for the process, configured once here so that loggers can be cached;
# `configure_logging` changes its level, format and secrets in place.
_PIPELINE = _Pipeline()


class _Logger(structlog.BoundLoggerBase):
    """A bound logger whose disabled levels return before any processor runs."""

    def debug(self, event: str, **fields: Any) -> None:
        if _PIPELINE.level <= logging.DEBUG:
            self._proxy_to_logger("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        if _PIPELINE.level <= logging.INFO:
            self._proxy_to_logger("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        if _PIPELINE.level <= logging.WARNING:
            self._proxy_to_logger("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._proxy_to_logger("error", event, **fields)

    def exception(self, event: str, **fields: Any) -> None:
        fields.setdefault("exc_info", True)
        self._proxy_to_logger("error", event, **fields)


def info_enabled() -> bool:
    """Whether info lines are written (to skip building fields that would be dropped)."""
    return _PIPELINE.level <= logging.INFO


def get_logger(name: str) -> _Logger:
    """The service's logger for `name` (a module's dotted name)."""
    logger: _Logger = structlog.get_logger(name)
    return logger


_TIMESTAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)
_SHARED: list[Processor] = [
    _PIPELINE.annotate,
    _TIMESTAMP,
    structlog.processors.format_exc_info,
]
structlog.configure(
    processors=[*_SHARED, _PIPELINE.render],
    logger_factory=_stderr_logger,
    wrapper_class=_Logger,
    cache_logger_on_first_use=True,
)


def configure_logging(
    level: str = "info", fmt: str = "json", service_secrets: Iterable[str] = ()
) -> None:
    """Set the level, the format and the always-masked secrets; route stdlib logs here too."""
    _PIPELINE.level = _LEVELS[level.lower()]
    _PIPELINE.inner = (
        _json_renderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    _PIPELINE.service_secrets = Redactor(service_secrets)
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                *_SHARED,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _PIPELINE.render,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_PIPELINE.level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The mcp package logs transport errors with tracebacks that carry upstream URLs;
    # the MCP pool reports those failures itself, redacted.
    logging.getLogger("mcp").setLevel(logging.CRITICAL)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stdlib handler writing to whatever `sys.stderr` is at the time of each record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass
