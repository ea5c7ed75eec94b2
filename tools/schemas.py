"""JSON Schema checks shared by the tool kinds whose parameters are a schema."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

__all__ = ["EMPTY_OBJECT_SCHEMA", "check_object_schema"]

EMPTY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def check_object_schema(value: dict[str, Any], *, field: str = "parameters") -> dict[str, Any]:
    """`value` when it is a valid JSON Schema of an object; else ValueError naming `field`."""
    if value.get("type", "object") != "object":
        raise ValueError(f"{field} must be a JSON Schema of type 'object'")
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        raise ValueError(f"{field} is not a valid JSON Schema: {exc.message}") from None
    remote = _remote_ref(value)
    if remote is not None:
        raise ValueError(f"{field} may only use local references ('#/...'), not {remote!r}")
    return value


def _remote_ref(node: object) -> str | None:
    """The first `$ref` that points outside the schema, if any (nothing is ever fetched)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return ref
        children: list[object] = list(node.values())
    elif isinstance(node, list):
        children = list(node)
    else:
        return None
    for child in children:
        found = _remote_ref(child)
        if found is not None:
            return found
    return None
