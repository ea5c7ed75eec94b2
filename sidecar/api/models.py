"""Wire models of the HTTP API: the public contract, parsed at the edge."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from tools.base import Number

__all__ = [
    "BatchRequest",
    "BatchResponse",
    "ErrorBody",
    "ErrorResponse",
    "ExecuteRequest",
    "ExecuteResponse",
    "FunctionCallBody",
    "ResolveRequest",
    "ResolveResponse",
    "ResolvedTool",
    "ToolError",
    "ToolList",
]


class ExecuteRequest(BaseModel):
    """One tool call: which tool, the model's arguments, the request's variables."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tool: dict[str, Any] | str = Field(
        description='A tools[] entry (`{"type": "orq:http", "tool_id": ...}`), an inline '
        "definition, or a platform tool name, key or id."
    )
    arguments: dict[str, JsonValue] | str = Field(
        default_factory=dict, description="An object, or the model's JSON string."
    )
    variables: dict[str, JsonValue] | None = Field(
        default=None,
        description='Name to value; `{"secret": true, "value": "..."}` marks a secret.',
    )
    call_id: str | None = Field(default=None, max_length=256)
    timeout: Number | None = Field(default=None, gt=0, le=600, description="Seconds.")


class BatchRequest(BaseModel):
    """Several calls run concurrently; `variables` apply to each (a call's own win)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    calls: list[ExecuteRequest] = Field(min_length=1)
    variables: dict[str, JsonValue] | None = None


class ToolError(BaseModel):
    """Why a call failed, for the model to read (redacted)."""

    code: str
    message: str
    param: str | None = None


class FunctionCallBody(BaseModel):
    """A function call the caller must execute."""

    type: Literal["function_call"] = "function_call"
    call_id: str
    name: str
    arguments: str


class ExecuteResponse(BaseModel):
    """The outcome of one call."""

    call_id: str
    tool: str | None = None
    status: Literal["completed", "failed", "requires_action"]
    result: JsonValue = None
    error: ToolError | None = None
    function_call: FunctionCallBody | None = None
    duration_ms: float


class BatchResponse(BaseModel):
    """The outcomes, in the order of the calls."""

    object: Literal["list"] = "list"
    data: list[ExecuteResponse]


class ResolveRequest(BaseModel):
    """The tools[] entries whose model-facing definitions are wanted."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tools: list[dict[str, Any] | str] = Field(min_length=1)
    variables: dict[str, Any] | None = Field(
        default=None, description="Values an MCP server's URL and headers need to be listed."
    )


class ResolvedTool(BaseModel):
    """A function definition for the model, with the reference that executes it."""

    type: Literal["function"] = "function"
    name: str
    description: str
    parameters: dict[str, JsonValue]
    strict: bool | None = None
    tool: dict[str, Any] | str = Field(description="The reference to execute it with.")


class ResolveResponse(BaseModel):
    """The definitions, in the order of the entries."""

    tools: list[ResolvedTool]


class ToolList(BaseModel):
    """A page of registered tools, orq's list shape."""

    object: Literal["list"] = "list"
    data: list[dict[str, JsonValue]]
    has_more: bool


class ErrorBody(BaseModel):
    """What went wrong with a request."""

    type: str
    code: str
    message: str
    param: str | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: the error object, and its message at the top level too.

    The OpenAI SDK reads `error`; `orq-ai-sdk` parses its registry errors (401, 404)
    as `{message, code?}` and fails on a body without a top-level `message`.
    """

    error: ErrorBody
    message: str
