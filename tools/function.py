"""Function tools: executed by the caller, never by the service (SPEC §2.6).

A `json_schema` tool is the same thing seen from the other side: its schema is a
structured answer the model fills in, offered as a function; the call is handed
back to the caller as it is, nothing runs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from tools.base import FunctionDefinition, HandBack, JsonObject, ToolContext, ToolOutput
from tools.schemas import EMPTY_OBJECT_SCHEMA, check_object_schema

__all__ = ["FunctionSpec", "FunctionTool", "JsonSchemaSpec"]


class FunctionSpec(BaseModel):
    """A function tool's definition, as the model sees it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: dict(EMPTY_OBJECT_SCHEMA))
    strict: StrictBool | None = None

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_object_schema(value)


class JsonSchemaSpec(BaseModel):
    """A `json_schema` tool's definition (orq's shape): the structured answer's schema."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    answer_schema: dict[str, Any] = Field(alias="schema")
    strict: StrictBool | None = None

    @field_validator("answer_schema")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_object_schema(value, field="schema")

    def as_function(self) -> FunctionSpec:
        """The function the model is offered: its arguments are the answer."""
        return FunctionSpec(
            name=self.name,
            description=self.description,
            parameters=self.answer_schema,
            strict=self.strict,
        )


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
