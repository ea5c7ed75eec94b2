"""Structured logs (JSON or console) on stderr, redacted as the final step.

Every line is rendered first and redacted last, so no processor or formatter can
reintroduce a secret: the call's secrets come from a context variable set by the
executor for the duration of a call, the service's own secrets (API keys,
encryption key) are masked always.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from sidecar.redaction import Redactor

__all__ = ["configure_logging", "redacting"]

_call_redactor: ContextVar[Redactor | None] = ContextVar("call_redactor", default=None)


@contextmanager
def redacting(redactor: Redactor) -> Iterator[None]:
    """Mask `redactor`'s secrets in every log line written in this context."""
    token = _call_redactor.set(redactor)
    try:
        yield
    finally:
        _call_redactor.reset(token)


class _RedactingRenderer:
    """Renders an event with `inner`, then masks every secret in play."""

    def __init__(self, inner: Processor, service_secrets: Redactor) -> None:
        self._inner = inner
        self._service_secrets = service_secrets

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> str:
        line = self._inner(logger, name, event)
        text = line if isinstance(line, str) else str(line)
        call = _call_redactor.get()
        if call:
            text = call.redact(text)
        return self._service_secrets.redact(text) if self._service_secrets else text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(
    level: str = "info", fmt: str = "json", service_secrets: Iterable[str] = ()
) -> None:
    """Send structlog and stdlib logging (uvicorn included) to stderr through one renderer."""
    inner: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    renderer = _RedactingRenderer(inner, Redactor(service_secrets))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)


def bind_request(**fields: Any) -> None:
    """Attach fields (the request id) to every log line of the current request."""
    structlog.contextvars.bind_contextvars(**fields)
