"""Function tools: executed by the caller, never by the service (SPEC §2.6)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.base import FunctionDefinition, HandBack, JsonObject, ToolContext, ToolOutput

__all__ = ["FunctionSpec", "FunctionTool"]

EMPTY_OBJECT_SCHEMA: JsonObject = {"type": "object", "properties": {}}


class FunctionSpec(BaseModel):
    """A function tool's definition, as the model sees it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: dict(EMPTY_OBJECT_SCHEMA))
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type", "object") != "object":
            raise ValueError("parameters must be a JSON Schema of type 'object'")
        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            raise ValueError(f"parameters is not a valid JSON Schema: {exc.message}") from None
        return value


class FunctionTool:
    """Validates arguments (the executor does) and hands the call back to the caller."""

    def __init__(self, spec: FunctionSpec, *, description: str = "") -> None:
        self._definition = FunctionDefinition(
            name=spec.name,
            description=spec.description or description,
            parameters=spec.parameters,
            strict=spec.strict,
        )

    @property
    def definition(self) -> FunctionDefinition:
        return self._definition

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolOutput:
        return HandBack(name=self._definition.name, arguments=arguments)
