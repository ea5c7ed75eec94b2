"""Spans: what the service records, in OpenTelemetry's data model, and the context that
makes one span the parent of the next.

A span costs a few microseconds: its ids, two clock readings, a dict of attributes and a
context variable. Nothing is encoded or sent here: a finished span is handed to its sink
(the batch export), which encodes it at once and sends it later, a batch at a time, on
the event loop.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from enum import IntEnum
from functools import partial
from types import TracebackType
from typing import Literal, Protocol

from sidecar.logs import call_redactor
from sidecar.redaction import Redactor

__all__ = [
    "MAX_TEXT_CHARS",
    "NO_SPAN",
    "Attributes",
    "Span",
    "SpanKind",
    "SpanSink",
    "Unsampled",
    "Value",
    "current_span",
    "mark_unsampled",
    "new_span",
    "redacted",
    "remote_parent",
    "restore_span",
]

Value = str | bool | int | float | Sequence[str] | Sequence[int] | Sequence[float]
# Attributes, or what makes them: a hot path passes a function, called only when tracing
# is on, so that tracing off builds nothing.
Attributes = Mapping[str, Value] | Callable[[], Mapping[str, Value]] | None
MAX_TEXT_CHARS = 1024
_TRACESTATE_CHARS = 512
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_random_bits = random.getrandbits
_now_ns = time.time_ns


class SpanKind(IntEnum):
    """OTLP's span kinds, with their wire numbers."""

    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


class StatusCode(IntEnum):
    UNSET = 0
    OK = 1
    ERROR = 2


class SpanSink(Protocol):
    """Where finished, sampled spans go (the batch export)."""

    def add(self, span: Span) -> None: ...


class Span:
    """A recording span: values pass the redactor of the calls it runs within on their
    way in. The caller's span (from `traceparent`) and `NO_SPAN` record nothing."""

    __slots__ = (
        "_sink",
        "_token",
        "attributes",
        "end_ns",
        "kind",
        "name",
        "parent_remote",
        "parent_span_id",
        "remote",
        "sampled",
        "span_id",
        "start_ns",
        "status_code",
        "status_message",
        "trace_id",
        "trace_state",
    )

    def __init__(
        self,
        name: str,
        trace_id: int,
        span_id: int,
        parent: Span | None,
        kind: SpanKind,
        sink: SpanSink | None,
    ) -> None:
        self.name = name
        self.trace_id = trace_id
        self.span_id = span_id
        if parent is None:
            self.parent_span_id = 0
            self.parent_remote = False
            self.trace_state = ""
        else:
            self.parent_span_id = parent.span_id
            self.parent_remote = parent.remote
            self.trace_state = parent.trace_state
        self.remote: bool = False  # the caller's span, read from its `traceparent`
        self.kind = kind
        self.sampled = sink is not None
        self._sink = sink
        self.attributes: dict[str, Value] = {}
        self.status_code = StatusCode.UNSET
        self.status_message = ""
        self.start_ns = _now_ns()
        self.end_ns = 0

    def __enter__(self) -> Span:
        """Current inside the `with` block; failed by an exception that leaves it
        (`error.type` is the exception's `code`, or its class); ended at the exit."""
        self._token = _CURRENT.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        _CURRENT.reset(self._token)
        if exc is not None:
            code = getattr(exc, "code", None)
            self.fail(code if isinstance(code, str) else type(exc).__name__, str(exc))
        self.end()
        return False

    def set(self, name: str, value: Value) -> None:
        if self._sink is not None:
            self.attributes[name] = redacted(value, call_redactor())

    def set_all(self, attributes: Attributes) -> None:
        if self._sink is not None and attributes:
            made = attributes() if callable(attributes) else attributes
            redactor = call_redactor()
            kept = self.attributes
            for name, value in made.items():
                if value.__class__ is str and redactor is None:  # the common case, inline
                    kept[name] = value if len(value) <= MAX_TEXT_CHARS else value[:MAX_TEXT_CHARS]
                else:
                    kept[name] = redacted(value, redactor)

    def rename(self, name: str) -> None:
        if self._sink is not None:
            self.name = _redacted_text(name, call_redactor())

    def fail(self, code: str, message: str = "") -> None:
        """Mark the span failed: `error.type` is the code, the status says the message."""
        if self._sink is not None:
            redactor = call_redactor()
            self.attributes["error.type"] = _redacted_text(code, redactor)
            self.status_code = StatusCode.ERROR
            self.status_message = _redacted_text(message, redactor)

    def end(self) -> None:
        """Finish the span and hand it on (once; later changes are ignored)."""
        sink = self._sink
        if sink is not None:
            self._sink = None
            self.end_ns = _now_ns()
            sink.add(self)


class _NoSpan(Span):
    """What a span is while tracing is off, or when its trace is not sampled: nothing is
    recorded, here or under it. As a `with` block it leaves the context as it is."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("", 0, 0, None, SpanKind.INTERNAL, None)

    def __enter__(self) -> Span:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        return False


NO_SPAN = _NoSpan()
_CURRENT: ContextVar[Span | None] = ContextVar("sidecar_span", default=None)
current_span = _CURRENT.get
# `Unsampled` without its `with` block, where every request pays for it (the HTTP edge):
# `token = mark_unsampled()`, then `restore_span(token)` when the work is done.
mark_unsampled: Callable[[], Token[Span | None]] = partial(_CURRENT.set, NO_SPAN)
restore_span = _CURRENT.reset


class Unsampled:
    """A `with` block for a trace not sampled: `NO_SPAN` is current inside, which tells
    the spans under it to record nothing."""

    __slots__ = ("_token",)

    def __enter__(self) -> Span:
        self._token: Token[Span | None] = _CURRENT.set(NO_SPAN)
        return NO_SPAN

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        _CURRENT.reset(self._token)
        return False


def new_span(
    name: str | Callable[[], str],
    attributes: Attributes,
    kind: SpanKind,
    parent: Span | None,
    decide: Callable[[int, Span | None], bool],
    sink: SpanSink,
) -> Span | None:
    """A span under `parent` (a new trace without one) when `decide` samples it, else
    None: a span not sampled records nothing, and neither do its children (every
    sampler decides alike on one trace id, or follows the parent)."""
    trace_id = (_random_bits(128) or 1) if parent is None else parent.trace_id
    if not decide(trace_id, parent):
        return None
    span = Span(
        _redacted_text(name if isinstance(name, str) else name(), call_redactor()),
        trace_id,
        _random_bits(64) or 1,
        parent,
        kind,
        sink,
    )
    if attributes:
        span.set_all(attributes)
    return span


def remote_parent(traceparent: str, tracestate: str | None) -> Span | None:
    """The caller's span, as its W3C `traceparent` (and `tracestate`) headers describe it."""
    found = _TRACEPARENT.fullmatch(traceparent.strip().lower())
    if found is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = found.groups()
    if version == "ff" or (version == "00" and rest) or not int(trace_hex, 16):
        return None
    if not int(span_hex, 16):
        return None
    parent = Span("", int(trace_hex, 16), int(span_hex, 16), None, SpanKind.SERVER, None)
    parent.sampled = bool(int(flags_hex, 16) & 1)
    parent.remote = True
    state = (tracestate or "").strip()
    if len(state) <= _TRACESTATE_CHARS and state.isascii() and state.isprintable():
        parent.trace_state = state
    return parent


def redacted(value: Value, redactor: Redactor | None) -> Value:
    """`value` with `redactor`'s secrets masked in its texts, cut to what a span keeps."""
    if value.__class__ is str:
        return _redacted_text(value, redactor)
    if isinstance(value, list | tuple):  # kept a list: the encoder caches single values
        if value and isinstance(value[0], str):
            return [_redacted_text(str(item), redactor) for item in value]
        return list(value)
    return value


def _redacted_text(text: str, redactor: Redactor | None) -> str:
    """`text` with the secrets of the calls it runs within masked (the context's
    `call_redactor()`), cut to the longest value a span keeps."""
    if redactor is not None:
        text = redactor.redact(text)
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS]
