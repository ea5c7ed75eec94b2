"""Request variables: plain values and secrets (SPEC §3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.errors import BadRequest
from tools.base import JsonValue, Secret, VariableValue

__all__ = ["parse_variables", "public_variables", "secret_values"]

VARIABLE_NAME_MAX = 128


def parse_variables(
    raw: Mapping[str, Any] | None, *, param: str = "variables"
) -> dict[str, VariableValue]:
    """Wire variables to values; `{"secret": true, "value": "..."}` becomes a `Secret`."""
    if raw is None:
        return {}
    parsed: dict[str, VariableValue] = {}
    for name, value in raw.items():
        if not name or len(name) > VARIABLE_NAME_MAX:
            raise BadRequest(
                f"variable names must be 1-{VARIABLE_NAME_MAX} characters", param=param
            )
        parsed[name] = _parse_one(name, value, param)
    return parsed


def _parse_one(name: str, value: Any, param: str) -> VariableValue:
    if isinstance(value, dict) and value.get("secret") is True:
        secret = value.get("value")
        if not isinstance(secret, str):
            raise BadRequest(
                f"secret variable {name!r} needs a string 'value'", param=f"{param}.{name}"
            )
        return Secret(secret)
    plain: JsonValue = value
    return plain


def secret_values(variables: Mapping[str, VariableValue]) -> list[str]:
    """The revealed values of every secret among `variables`, for the redactor."""
    return [value.reveal() for value in variables.values() if isinstance(value, Secret)]


def public_variables(variables: Mapping[str, VariableValue]) -> dict[str, JsonValue]:
    """The variables safe to echo: secret keys omitted."""
    return {name: value for name, value in variables.items() if not isinstance(value, Secret)}
