"""Function tools: executed by the caller, never by the service (SPEC §2.6)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.base import FunctionDefinition, HandBack, JsonObject, ToolContext, ToolOutput
from tools.schemas import EMPTY_OBJECT_SCHEMA, check_object_schema

__all__ = ["FunctionSpec", "FunctionTool"]


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
        return check_object_schema(value)


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
