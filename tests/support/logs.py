"""The service's log pipeline for one test, then the logging configuration as it was."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from sidecar.logs import configure_logging

__all__ = ["restored_logging"]

_TOUCHED = ("uvicorn", "uvicorn.error", "httpx")


@contextmanager
def restored_logging() -> Iterator[None]:
    """Let the block call `configure_logging`; put every logger it changes back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    others = {name: logging.getLogger(name) for name in _TOUCHED}
    saved_others = {name: (lg.handlers[:], lg.propagate, lg.level) for name, lg in others.items()}
    access = logging.getLogger("uvicorn.access").disabled
    try:
        yield
    finally:
        configure_logging()  # the pipeline's level, format and secrets as at import
        root.handlers[:], level, config = saved
        root.setLevel(level)
        structlog.reset_defaults()
        structlog.configure(**config)
        for name, (handlers, propagate, lvl) in saved_others.items():
            others[name].handlers[:] = handlers
            others[name].propagate = propagate
            others[name].setLevel(lvl)
        logging.getLogger("uvicorn.access").disabled = access
