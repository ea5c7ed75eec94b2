"""Spans in OTLP's protobuf encoding (`ExportTraceServiceRequest`), written directly.

The messages and field numbers are those of opentelemetry-proto's `trace/v1/trace.proto`
and `common/v1/common.proto`; the tests decode what this writes with the official
generated classes. An attribute's encoding is kept for reuse: most of a span's
attributes (method, route, tool name, model) repeat from call to call.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from functools import lru_cache

from sidecar.tracing.spans import Span, SpanKind, Value

__all__ = ["Encoder"]

_DOUBLE = struct.Struct("<d").pack
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


_ONE_BYTE = tuple(bytes((number,)) for number in range(0x80))


def _varint(number: int) -> bytes:
    if number < 0x80:
        return _ONE_BYTE[number]
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte(s), the length, the payload."""
    return tag + _varint(len(payload)) + payload


def _any_value(value: Value) -> bytes:
    """An `AnyValue` message's payload."""
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8", "replace"))
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return b"\x18" + _varint(value & 0xFFFF_FFFF_FFFF_FFFF)
        return _field(b"\x0a", str(value).encode())
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    items = b"".join(_field(b"\x0a", _any_value(item)) for item in value)
    return _field(b"\x2a", items)  # array_value: ArrayValue{values}


def _key_value(key: str, payload: bytes) -> bytes:
    """A `KeyValue` message's payload: `key` and an `AnyValue` payload."""
    name = key.encode("utf-8", "replace")
    return b"\x0a" + _varint(len(name)) + name + b"\x12" + _varint(len(payload)) + payload


_STRING = b"\x0a"  # AnyValue.string_value
_TEXTS_KEPT = 4096
# The entries of text attributes, by (key, value): a dict, so that a hit costs one lookup
# of the pair the attributes' items already are. Only texts: a number's pair would equal
# another type's (1, 1.0 and True are equal keys, and differ on the wire).
_texts: dict[tuple[str, Value], bytes] = {}


def _attributes(attributes: Mapping[str, Value]) -> list[bytes]:
    """Span.attributes (field 9), one entry per attribute."""
    encoded = []
    for item in attributes.items():
        key, value = item
        if value.__class__ is str:
            found = _texts.get(item)
            if found is None:
                found = _text_attribute(key, value)
                if len(_texts) >= _TEXTS_KEPT:
                    _texts.clear()
                _texts[item] = found
        elif isinstance(value, list | tuple):
            found = _entry(key, _any_value(value))
        else:
            found = _number_attribute(key, value)
        encoded.append(found)
    return encoded


def _text_attribute(key: str, value: str) -> bytes:
    text = value.encode("utf-8", "replace")
    return _entry(key, _STRING + _varint(len(text)) + text)


@lru_cache(maxsize=1024, typed=True)
def _number_attribute(key: str, value: bool | int | float) -> bytes:
    return _entry(key, _any_value(value))


def _entry(key: str, payload: bytes) -> bytes:
    """A span's attribute: the `KeyValue` of `key` and an `AnyValue` payload."""
    entry = _key_value(key, payload)
    return b"\x4a" + _varint(len(entry)) + entry


_LOW_64 = (1 << 64) - 1
# Span.trace_id (field 1, 16 bytes), span_id (2, 8 bytes) and parent_span_id (4, 8
# bytes), tags included; then start and end times (7 and 8, fixed64) and flags (16,
# fixed32). Protobuf takes fields in any order: these go first, in two calls.
_IDS = struct.Struct(">HQQHQ").pack
_IDS_AND_PARENT = struct.Struct(">HQQHQHQ").pack
_TIMES_AND_FLAGS = struct.Struct("<BQBQHI").pack
_FLAGS_TAG = 0x0185  # field 16, fixed32, as two little-endian bytes
# Span.flags: the sampled trace flag, "whether the parent is remote is known" (0x100),
# and "the parent is remote" (0x200).
_LOCAL_PARENT_FLAGS, _REMOTE_PARENT_FLAGS = 0x101, 0x301
_KINDS = {kind: b"\x30" + bytes((int(kind),)) for kind in SpanKind}


@lru_cache(maxsize=1024)
def _name_and_kind(name: str, kind: int) -> bytes:
    """Span.name (field 5) and Span.kind (6): a few names repeat from call to call."""
    encoded = name.encode("utf-8", "replace")
    return b"\x2a" + _varint(len(encoded)) + encoded + _KINDS[SpanKind(kind)]


def _span(span: Span) -> bytes:
    trace_id, parent_span_id = span.trace_id, span.parent_span_id
    if parent_span_id:
        ids = _IDS_AND_PARENT(
            0x0A10, trace_id >> 64, trace_id & _LOW_64, 0x1208, span.span_id, 0x2208, parent_span_id
        )
    else:
        ids = _IDS(0x0A10, trace_id >> 64, trace_id & _LOW_64, 0x1208, span.span_id)
    flags = _REMOTE_PARENT_FLAGS if span.parent_remote else _LOCAL_PARENT_FLAGS
    body = b"".join(
        [
            ids,
            _field(b"\x1a", span.trace_state.encode()) if span.trace_state else b"",
            _name_and_kind(span.name, span.kind),
            _TIMES_AND_FLAGS(0x39, span.start_ns, 0x41, span.end_ns, _FLAGS_TAG, flags),
            *_attributes(span.attributes),
        ]
    )
    if span.status_code:
        status = _field(b"\x12", span.status_message.encode("utf-8", "replace"))
        body += _field(b"\x7a", status + b"\x18" + bytes((int(span.status_code),)))
    return b"\x12" + _varint(len(body)) + body  # ScopeSpans.spans


class Encoder:
    """Writes export requests for one resource and instrumentation scope."""

    def __init__(self, resource: Mapping[str, Value], scope: str, scope_version: str) -> None:
        attributes = b"".join(
            _field(b"\x0a", _key_value(k, _any_value(v))) for k, v in resource.items()
        )
        self._resource = _field(b"\x0a", attributes)  # ResourceSpans.resource
        name = _field(b"\x0a", scope.encode()) + _field(b"\x12", scope_version.encode())
        self._scope = _field(b"\x0a", name)  # ScopeSpans.scope

    # One span encoded, to be joined with others into a request (`request_of`).
    span = staticmethod(_span)

    def request(self, spans: Iterable[Span]) -> bytes:
        """An `ExportTraceServiceRequest` holding `spans`."""
        return self.request_of(b"".join(map(_span, spans)))

    def request_of(self, encoded: bytes) -> bytes:
        """An `ExportTraceServiceRequest` holding spans already encoded (`span`)."""
        scope_spans = _field(b"\x12", self._scope + encoded)
        return _field(b"\x0a", self._resource + scope_spans)
