"""Arguments from the model: parsed and validated against the tool's JSON Schema."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable

from tools.base import InvalidArguments, JsonObject, Tool

__all__ = ["ArgumentBinder"]


class ArgumentBinder:
    """Parses and validates a call's arguments, with one compiled validator per live tool."""

    def __init__(self, size: int = 1024) -> None:
        # Keyed by the tool object (the registry keeps tools built once), holding it so
        # that its id cannot be reused while the entry lives; the oldest entry goes first.
        self._compiled: OrderedDict[int, tuple[Tool, _Compiled]] = OrderedDict()
        self._size = size

    def bind(self, tool: Tool, raw: JsonObject | str) -> JsonObject:
        """The arguments as an object that satisfies the tool's schema, or `InvalidArguments`."""
        arguments = _parse(raw)
        entry = self._compiled.get(id(tool))
        compiled = entry[1] if entry is not None and entry[0] is tool else self._compile(tool)
        if not arguments and compiled.accepts_empty:
            return arguments
        try:
            error = best_match(compiled.validator.iter_errors(arguments))
        except (Unresolvable, RecursionError) as exc:
            raise InvalidArguments(
                f"the tool's parameters schema cannot be applied: {type(exc).__name__}"
            ) from None
        if error is not None:
            raise InvalidArguments(_describe(error), param=_param(error))
        return arguments

    def _compile(self, tool: Tool) -> _Compiled:
        validator = _validator(json.dumps(tool.definition.parameters, sort_keys=True))
        # Calls without arguments are common (and validation is a pure function of
        # schema and instance): decide the empty object once per tool.
        compiled = _Compiled(validator, validator.is_valid({}))
        self._compiled[id(tool)] = (tool, compiled)
        if len(self._compiled) > self._size:
            self._compiled.popitem(last=False)
        return compiled


@dataclass(frozen=True)
class _Compiled:
    validator: Draft202012Validator
    accepts_empty: bool


def _parse(raw: JsonObject | str) -> JsonObject:
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        try:
            raw = json.loads(raw, parse_constant=_no_constant)
        except (RecursionError, ValueError) as exc:
            if not isinstance(exc, json.JSONDecodeError):
                raise InvalidArguments(f"arguments are not valid JSON: {exc}") from None
            raise InvalidArguments(
                f"arguments are not valid JSON: {exc.msg} at position {exc.pos}"
            ) from None
    if not isinstance(raw, dict):
        raise InvalidArguments(f"arguments must be a JSON object, not {_json_type(raw)}")
    return raw


@lru_cache(maxsize=1024)
def _validator(schema_text: str) -> Draft202012Validator:
    # An empty registry: a `$ref` to a URL is never fetched (no network, no blocking).
    return Draft202012Validator(json.loads(schema_text), registry=Registry())


def _path(error: ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path)


def _missing(error: ValidationError) -> str | None:
    required = error.validator_value
    if error.validator != "required" or not isinstance(error.instance, dict):
        return None
    if not isinstance(required, list):
        return None
    names = [name for name in required if name not in error.instance]
    return names[0] if names else None


def _param(error: ValidationError) -> str | None:
    missing = _missing(error)
    parts = [*(str(part) for part in error.absolute_path), *([missing] if missing else [])]
    return ".".join(parts) or None


def _describe(error: ValidationError) -> str:
    where = _path(error)
    missing = _missing(error)
    if missing is not None:
        field = f"{where}.{missing}" if where else missing
        return f"missing required argument '{field}'"
    if error.validator == "type":
        expected = error.validator_value
        return f"invalid argument '{where}': expected {expected}, got {_json_type(error.instance)}"
    if where:
        return f"invalid argument '{where}': {error.message}"
    return f"invalid arguments: {error.message}"


def _json_type(value: Any) -> str:
    match value:
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "object"
        case None:
            return "null"
    return type(value).__name__


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")
