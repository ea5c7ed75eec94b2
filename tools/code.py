"""Python code tools (`type: "code"`): a module-level script run in the sandbox (SPEC §2.5).

Each argument is a top-level variable, and so is each request variable (secret
values included, revealed only here, on their way into the sandbox's pipe);
arguments win on a name clash, and `params` holds the arguments too. The code
sets `result`; `print` output comes back as `stdout`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.base import (
    NO_SECRETS,
    CodeOutcome,
    FunctionDefinition,
    JsonObject,
    JsonValue,
    Secret,
    SecretMask,
    TimeLimit,
    ToolContext,
    ToolError,
    ToolOutput,
    ToolResult,
    WholeNumber,
)
from tools.code_http import outbound_call
from tools.schemas import EMPTY_OBJECT_SCHEMA, check_object_schema

__all__ = ["MAX_CODE_CHARS", "CodeSpec", "CodeTool", "sandbox_error"]

MAX_CODE_CHARS = 262_144


class CodeSpec(BaseModel):
    """A code tool's definition (orq's `code_tool`, plus `timeout` and `allowed_hosts`)."""

    model_config = ConfigDict(extra="forbid")

    language: Literal["python"] = "python"
    code: str = Field(min_length=1, max_length=MAX_CODE_CHARS)
    parameters: dict[str, Any] = Field(default_factory=lambda: dict(EMPTY_OBJECT_SCHEMA))
    timeout: WholeNumber = Field(default=30, ge=1, le=120)
    allowed_hosts: list[str] = Field(default_factory=list)

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_object_schema(value)


def sandbox_error(outcome: CodeOutcome, mask: SecretMask = NO_SECRETS) -> ToolError:
    """The typed error of a failed run: `sandbox_<kind>`.

    A message the sandbox cut may end inside a secret: `mask` masks that tail.
    """
    message = outcome.message
    if outcome.message_cut:
        message = mask.redact_truncated(message) + "..."
    return ToolError(message, code=f"sandbox_{outcome.failure}")


class CodeTool:
    """Runs its code in the sandbox with the call's arguments and variables."""

    def __init__(
        self, *, name: str, description: str, spec: CodeSpec, max_response_bytes: int = 1_048_576
    ) -> None:
        self.spec = spec
        self._max_response_bytes = max_response_bytes
        self._definition = FunctionDefinition(name, description, spec.parameters)

    @property
    def definition(self) -> FunctionDefinition:
        return self._definition

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolOutput:
        if ctx.code is None:
            raise ToolError("code tools are not available here", code="sandbox_unavailable")
        names: dict[str, JsonValue] = {
            name: value.reveal() if isinstance(value, Secret) else value
            for name, value in ctx.variables.items()
        }
        names.update(arguments)
        names["params"] = dict(arguments)
        limit = TimeLimit.of(float(self.spec.timeout), ctx.deadline)
        outcome = await ctx.code.run(
            self.spec.code,
            names,
            time_limit=limit.seconds,
            http=outbound_call(
                ctx, self.spec.allowed_hosts, max_response_bytes=self._max_response_bytes
            ),
        )
        if outcome.failure == "timeout":
            raise limit.expired(sandbox_error(outcome, ctx.mask))
        if outcome.failure is not None:
            raise sandbox_error(outcome, ctx.mask)
        return ToolResult({"result": outcome.result, "stdout": outcome.stdout})
