"""The schemas the OpenResponses compliance suite validates with, as JSON Schema.

`openresponses/openresponses` checks a response with the zod schema `responseResourceSchema`
(`src/lib/compliance-tests.ts`) and every streamed event with a union of the streaming
event schemas (`src/lib/sse-parser.ts`); both are generated (`src/generated/kubb/zod`)
from its OpenAPI document. These are re-expressed from that document,
`public/openapi/openapi.json` (version 2026-04-24), keeping its `required` lists, types,
enums and nullability. As zod does, objects keep properties they do not name (zod strips
them, never refuses them) and a `oneOf` with a discriminator is a union (`anyOf`).

    response_errors(data)   what is wrong with a response object ("path: message" each)
    event_errors(data)      what is wrong with one streamed event, as sse-parser words it
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

__all__ = ["EVENT_TYPES", "event_errors", "response_errors"]

STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}"}


def _union(*names: str) -> dict[str, Any]:
    return {"anyOf": [_ref(name) for name in names]}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _object(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


# A content part of an item (`Message` also takes `InputVideoContent`).
_PARTS = (
    "InputTextContent",
    "OutputTextContent",
    "TextContent",
    "SummaryTextContent",
    "ReasoningTextContent",
    "RefusalContent",
    "InputImageContent",
    "InputFileContent",
)
_STATUS = ("in_progress", "completed", "incomplete")

DEFS: dict[str, dict[str, Any]] = {
    "IncompleteDetails": _object(["reason"], reason=STR),
    "InputTextContent": _object(["type", "text"], type=_enum("input_text"), text=STR),
    "UrlCitationBody": _object(
        ["type", "url", "start_index", "end_index", "title"],
        type=_enum("url_citation"),
        url=STR,
        start_index=INT,
        end_index=INT,
        title=STR,
    ),
    "TopLogProb": _object(["token", "logprob", "bytes"], token=STR, logprob=NUM, bytes=_array(INT)),
    "LogProb": _object(
        ["token", "logprob", "bytes", "top_logprobs"],
        token=STR,
        logprob=NUM,
        bytes=_array(INT),
        top_logprobs=_array(_ref("TopLogProb")),
    ),
    "OutputTextContent": _object(
        ["type", "text", "annotations"],
        type=_enum("output_text"),
        text=STR,
        annotations=_array(_ref("UrlCitationBody")),
        logprobs=_array(_ref("LogProb")),
    ),
    "TextContent": _object(["type", "text"], type=_enum("text"), text=STR),
    "SummaryTextContent": _object(["type", "text"], type=_enum("summary_text"), text=STR),
    "ReasoningTextContent": _object(["type", "text"], type=_enum("reasoning_text"), text=STR),
    "RefusalContent": _object(["type", "refusal"], type=_enum("refusal"), refusal=STR),
    "InputImageContent": _object(
        ["type", "image_url", "detail"],
        type=_enum("input_image"),
        image_url=_nullable(STR),
        detail=_enum("low", "high", "auto"),
    ),
    "InputFileContent": _object(["type"], type=_enum("input_file"), filename=STR, file_url=STR),
    "InputVideoContent": _object(["type", "video_url"], type=_enum("input_video"), video_url=STR),
    "Message": _object(
        ["type", "id", "status", "role", "content"],
        type=_enum("message"),
        id=STR,
        status=_enum(*_STATUS),
        role=_enum("user", "assistant", "system", "developer"),
        content=_array(_union(*_PARTS, "InputVideoContent")),
        phase=_enum("commentary", "final_answer"),
    ),
    "FunctionCall": _object(
        ["type", "id", "call_id", "name", "arguments", "status"],
        type=_enum("function_call"),
        id=STR,
        call_id=STR,
        name=STR,
        arguments=STR,
        status=_enum(*_STATUS),
    ),
    "FunctionCallOutput": _object(
        ["type", "id", "call_id", "output", "status"],
        type=_enum("function_call_output"),
        id=STR,
        call_id=STR,
        output={
            "anyOf": [
                STR,
                _array(_union("InputTextContent", "InputImageContent", "InputFileContent")),
            ]
        },
        status=_enum(*_STATUS),
    ),
    "ReasoningBody": _object(
        ["type", "id", "summary"],
        type=_enum("reasoning"),
        id=STR,
        content=_array(_union(*_PARTS)),
        summary=_array(_union(*_PARTS)),
        encrypted_content=STR,
    ),
    "CompactionBody": _object(
        ["type", "id", "encrypted_content"],
        type=_enum("compaction"),
        id=STR,
        encrypted_content=STR,
    ),
    "ItemField": _union(
        "Message", "FunctionCall", "FunctionCallOutput", "ReasoningBody", "CompactionBody"
    ),
    "Error": _object(["code", "message"], code=STR, message=STR),
    "FunctionTool": _object(
        ["type", "name", "description", "parameters", "strict"],
        type=_enum("function"),
        name=STR,
        description=_nullable(STR),
        parameters=_nullable({"type": "object"}),
        strict=_nullable(BOOL),
    ),
    "FunctionToolChoice": _object(["type"], type=_enum("function"), name=STR),
    "ToolChoiceValueEnum": _enum("none", "auto", "required"),
    "AllowedToolChoice": _object(
        ["type", "tools", "mode"],
        type=_enum("allowed_tools"),
        tools=_array(_ref("FunctionToolChoice")),
        mode=_ref("ToolChoiceValueEnum"),
    ),
    "TextResponseFormat": _object(["type"], type=_enum("text")),
    "JsonObjectResponseFormat": _object(["type"], type=_enum("json_object")),
    # The document types `schema` as null (a generator's slip): left open here.
    "JsonSchemaResponseFormat": _object(
        ["type", "name", "description", "schema", "strict"],
        type=_enum("json_schema"),
        name=STR,
        description=_nullable(STR),
        strict=BOOL,
    ),
    "TextField": _object(
        ["format"],
        format=_union("TextResponseFormat", "JsonObjectResponseFormat", "JsonSchemaResponseFormat"),
        verbosity=_enum("low", "medium", "high"),
    ),
    "Reasoning": _object(
        ["effort", "summary"],
        effort=_nullable(_enum("none", "low", "medium", "high", "xhigh")),
        summary=_nullable(_enum("concise", "detailed", "auto")),
    ),
    "Usage": _object(
        [
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "input_tokens_details",
            "output_tokens_details",
        ],
        input_tokens=INT,
        output_tokens=INT,
        total_tokens=INT,
        input_tokens_details=_object(["cached_tokens"], cached_tokens=INT),
        output_tokens_details=_object(["reasoning_tokens"], reasoning_tokens=INT),
    ),
    "ResponseResource": _object(
        [
            "id",
            "object",
            "created_at",
            "completed_at",
            "status",
            "incomplete_details",
            "model",
            "previous_response_id",
            "instructions",
            "output",
            "error",
            "tools",
            "tool_choice",
            "truncation",
            "parallel_tool_calls",
            "text",
            "top_p",
            "presence_penalty",
            "frequency_penalty",
            "top_logprobs",
            "temperature",
            "reasoning",
            "usage",
            "max_output_tokens",
            "max_tool_calls",
            "store",
            "background",
            "service_tier",
            "metadata",
            "safety_identifier",
            "prompt_cache_key",
        ],
        id=STR,
        object=_enum("response"),
        created_at=INT,
        completed_at=_nullable(INT),
        status=STR,
        incomplete_details=_nullable(_ref("IncompleteDetails")),
        model=STR,
        previous_response_id=_nullable(STR),
        instructions=_nullable(STR),
        output=_array(_ref("ItemField")),
        error=_nullable(_ref("Error")),
        tools=_array(_ref("FunctionTool")),
        tool_choice=_union("FunctionToolChoice", "ToolChoiceValueEnum", "AllowedToolChoice"),
        truncation=_enum("auto", "disabled"),
        parallel_tool_calls=BOOL,
        text=_ref("TextField"),
        top_p=NUM,
        presence_penalty=NUM,
        frequency_penalty=NUM,
        top_logprobs=INT,
        temperature=NUM,
        reasoning=_nullable(_ref("Reasoning")),
        usage=_nullable(_ref("Usage")),
        max_output_tokens=_nullable(INT),
        max_tool_calls=_nullable(INT),
        store=BOOL,
        background=BOOL,
        service_tier=STR,
        metadata={},
        safety_identifier=_nullable(STR),
        prompt_cache_key=_nullable(STR),
    ),
}


def _event(kind: str, **fields: dict[str, Any]) -> dict[str, Any]:
    return _object(
        ["type", "sequence_number", *(name for name in fields if name not in _OPTIONAL)],
        type=_enum(kind),
        sequence_number=INT,
        **fields,
    )


_OPTIONAL = frozenset({"logprobs", "obfuscation"})
_WITH_RESPONSE = {"response": _ref("ResponseResource")}
_ITEM = {"output_index": INT, "item": _nullable(_ref("ItemField"))}
_AT = {"item_id": STR, "output_index": INT}
_PART = _union(*_PARTS)
_LOGPROBS = _array(_ref("LogProb"))

EVENTS: dict[str, dict[str, Any]] = {
    **{
        f"response.{state}": _event(f"response.{state}", **_WITH_RESPONSE)
        for state in ("created", "queued", "in_progress", "completed", "failed", "incomplete")
    },
    "response.output_item.added": _event("response.output_item.added", **_ITEM),
    "response.output_item.done": _event("response.output_item.done", **_ITEM),
    "response.reasoning_summary_part.added": _event(
        "response.reasoning_summary_part.added", **_AT, summary_index=INT, part=_PART
    ),
    "response.reasoning_summary_part.done": _event(
        "response.reasoning_summary_part.done", **_AT, summary_index=INT, part=_PART
    ),
    "response.content_part.added": _event(
        "response.content_part.added", **_AT, content_index=INT, part=_PART
    ),
    "response.content_part.done": _event(
        "response.content_part.done", **_AT, content_index=INT, part=_PART
    ),
    "response.output_text.delta": _event(
        "response.output_text.delta",
        **_AT,
        content_index=INT,
        delta=STR,
        logprobs=_LOGPROBS,
        obfuscation=STR,
    ),
    "response.output_text.done": _event(
        "response.output_text.done", **_AT, content_index=INT, text=STR, logprobs=_LOGPROBS
    ),
    "response.refusal.delta": _event("response.refusal.delta", **_AT, content_index=INT, delta=STR),
    "response.refusal.done": _event("response.refusal.done", **_AT, content_index=INT, refusal=STR),
    "response.reasoning.delta": _event(
        "response.reasoning.delta", **_AT, content_index=INT, delta=STR, obfuscation=STR
    ),
    "response.reasoning.done": _event(
        "response.reasoning.done", **_AT, content_index=INT, text=STR
    ),
    "response.reasoning_summary_text.delta": _event(
        "response.reasoning_summary_text.delta",
        **_AT,
        summary_index=INT,
        delta=STR,
        obfuscation=STR,
    ),
    "response.reasoning_summary_text.done": _event(
        "response.reasoning_summary_text.done", **_AT, summary_index=INT, text=STR
    ),
    "response.output_text.annotation.added": _event(
        "response.output_text.annotation.added",
        **_AT,
        content_index=INT,
        annotation_index=INT,
        annotation=_nullable(_ref("UrlCitationBody")),
    ),
    "response.function_call_arguments.delta": _event(
        "response.function_call_arguments.delta", **_AT, delta=STR, obfuscation=STR
    ),
    "response.function_call_arguments.done": _event(
        "response.function_call_arguments.done", **_AT, arguments=STR
    ),
    "error": _event(
        "error",
        error=_object(
            ["type", "code", "message", "param"],
            type=STR,
            code=_nullable(STR),
            message=STR,
            param=_nullable(STR),
        ),
    ),
}
EVENT_TYPES = frozenset(EVENTS)


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({"$defs": DEFS, **schema})


_RESPONSE = _validator(_ref("ResponseResource"))
_EVENTS = {kind: _validator(schema) for kind, schema in EVENTS.items()}


def _issues(validator: Draft202012Validator, data: Any) -> list[str]:
    issues = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        issues.append(_issue(error))
    return issues


def _issue(error: ValidationError) -> str:
    """`path: message`, as the suite words a zod issue; a union names its closest member."""
    if error.context:
        # A nullable field that is not null: the issue is in the other branch.
        branches = [
            e for e in error.context if e.validator != "type" or e.validator_value != "null"
        ]
        error = best_match(branches or error.context)
    path = ".".join(str(part) for part in error.absolute_path)
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    return f"{path}: {message}"


def response_errors(data: Any) -> list[str]:
    """The issues of a response object against ResponseResource (none when it is valid)."""
    return _issues(_RESPONSE, data)


def event_errors(data: Any) -> list[str]:
    """The issues of one streamed event against the streaming event union."""
    kind = data.get("type") if isinstance(data, dict) else None
    validator = _EVENTS.get(kind) if isinstance(kind, str) else None
    if validator is None:
        return [f"Event validation failed for {kind or 'unknown'}: not a streaming event type"]
    issues = _issues(validator, data)
    return [f"Event validation failed for {kind}: {'; '.join(issues)}"] if issues else []
