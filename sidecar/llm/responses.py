"""The Responses API request, as orq's `POST /v3/router/responses` takes it (RESPONSES.md §2).

Parsed at the edge: an unknown top-level field is a 400 naming it, as orq answers; a
field orq has that the sidecar does not implement is a 400 `unsupported_parameter`
naming it, never silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from sidecar.errors import BadRequest
from tools.base import Number, WholeNumber

__all__ = [
    "UNSUPPORTED_FIELDS",
    "Fallback",
    "Limits",
    "ResponseRequest",
    "RetryOptions",
    "parse_request",
]

# Fields of orq's (or OpenAI's) request that the sidecar does not implement.
UNSUPPORTED_FIELDS = frozenset(
    {
        "guardrails",
        "plugins",
        "memory",
        "knowledge",
        "cache",
        "load_balancer",
        "background",
        "conversation",
        "prompt",
        "include",
        "truncation",
        "service_tier",
        "top_logprobs",
        "contact",
        "orq",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Limits(_Strict):
    """Bounds of one run."""

    max_iterations: WholeNumber = Field(default=100, ge=1, le=100)
    max_execution_time: Number = Field(default=600.0, gt=0, le=3600)
    max_cost: Number = Field(default=0.0, ge=0)
    tool_timeout: Number = Field(default=300.0, gt=0, le=3600)


class Fallback(_Strict):
    """A model to try when the previous one failed for good."""

    model: str = Field(min_length=1)


class RetryOptions(_Strict):
    """Retries of one model call."""

    count: WholeNumber = Field(default=1, ge=1, le=5)
    on_codes: list[WholeNumber] = Field(default_factory=lambda: [429, 500, 502, 503, 504])


class TimeoutOptions(_Strict):
    """`call_timeout`: milliseconds for one provider call."""

    call_timeout: WholeNumber = Field(gt=0, le=3_600_000)


class TextFormat(BaseModel):
    """`text.format`: `text`, `json_object` or `json_schema` (name, schema, strict)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_schema", "json_object"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: TextFormat | None = None


class ReasoningOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    effort: Literal["minimal", "low", "medium", "high"] | None = None
    summary: str | None = None


class ResponseRequest(_Strict):
    """A request to create a response."""

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(default="")
    instructions: str | None = None
    tools: list[dict[str, Any] | str] = Field(default_factory=list)
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    max_tool_calls: WholeNumber | None = Field(default=None, ge=1)
    limits: Limits = Field(default_factory=Limits)
    variables: dict[str, Any] | None = None
    template_engine: Literal["text", "jinja", "mustache"] = "text"
    previous_response_id: str | None = None
    store: StrictBool = True
    stream: StrictBool = False
    fallbacks: list[Fallback] = Field(default_factory=list)
    retry: RetryOptions | None = None
    timeout: TimeoutOptions | None = None
    text: TextOptions | None = None
    reasoning: ReasoningOptions | None = None
    max_output_tokens: WholeNumber | None = Field(default=None, ge=1)
    temperature: Number | None = Field(default=None, ge=0, le=2)
    top_p: Number | None = Field(default=None, ge=0, le=1)
    stop_sequences: list[str] | None = None
    metadata: dict[str, str] | None = None
    tags: list[str] | None = None
    identity: dict[str, Any] | None = None
    thread: dict[str, Any] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    stream_options: dict[str, Any] | None = None


def parse_request(body: Any) -> ResponseRequest:
    """The request, or `BadRequest` naming the field that is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    for name in body:
        if name in UNSUPPORTED_FIELDS:
            raise BadRequest(
                f"{name!r} is not supported by this service",
                param=name,
                code="unsupported_parameter",
            )
    try:
        return ResponseRequest.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            raise BadRequest(
                f"unknown parameter {where!r}", param=where, code="unknown_parameter"
            ) from None
        raise BadRequest(f"{where}: {error['msg']}", param=where) from None
