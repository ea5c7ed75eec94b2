"""Per-tool options of a run, read off its `tools[]` entries (an agent's or the request's own).

requires_approval   a call waits for the user's approval before it runs
configuration       fixed arguments, merged over the model's; the model does not see them
timeout             seconds for one call of this tool (at most the run's `tool_timeout`)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sidecar.errors import BadRequest
from tools.base import FunctionDefinition

__all__ = ["ToolOptions", "tool_options"]

OPTION_FIELDS = ("requires_approval", "configuration", "timeout")
MAX_TIMEOUT = 3600.0


@dataclass(frozen=True)
class ToolOptions:
    """How the run treats calls of one tool."""

    requires_approval: bool = False
    configuration: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None

    def shown(self, definition: FunctionDefinition) -> FunctionDefinition:
        """The definition the model sees: configured arguments are not its to choose."""
        if not self.configuration:
            return definition
        schema = dict(definition.parameters)
        properties = schema.get("properties")
        if isinstance(properties, dict):
            schema["properties"] = {
                name: spec for name, spec in properties.items() if name not in self.configuration
            }
        required = schema.get("required")
        if isinstance(required, list):
            schema["required"] = [name for name in required if name not in self.configuration]
        return replace(definition, parameters=schema)

    def arguments(self, model_arguments: str) -> str:
        """The call's arguments: the model's, with the configuration merged over them."""
        if not self.configuration:
            return model_arguments
        try:
            given = json.loads(model_arguments) if model_arguments.strip() else {}
        except json.JSONDecodeError:
            return model_arguments  # the executor answers the model why
        if not isinstance(given, dict):
            return model_arguments
        return json.dumps({**given, **self.configuration}, ensure_ascii=False)


def tool_options(
    entry: dict[str, Any] | str, param: str
) -> tuple[ToolOptions, dict[str, Any] | str]:
    """The options of a `tools[]` entry, and the entry without them."""
    if isinstance(entry, str) or not any(name in entry for name in OPTION_FIELDS):
        return ToolOptions(), entry
    rest = {name: value for name, value in entry.items() if name not in OPTION_FIELDS}
    approval = entry.get("requires_approval", False)
    if not isinstance(approval, bool):
        raise BadRequest(
            "requires_approval must be true or false", param=f"{param}.requires_approval"
        )
    configuration = entry.get("configuration") or {}
    if not isinstance(configuration, dict):
        raise BadRequest("configuration must be an object", param=f"{param}.configuration")
    timeout = entry.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise BadRequest(
            f"timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}",
            param=f"{param}.timeout",
        )
    return ToolOptions(approval, configuration, None if timeout is None else float(timeout)), rest
