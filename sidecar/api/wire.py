"""Reading requests into wire models and writing models, executions and errors as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from sidecar.api.models import ErrorBody, ErrorResponse
from sidecar.errors import (
    BadRequest,
    ShuttingDown,
    SidecarError,
    StoreUnavailable,
    TooManyRequests,
    Unauthorized,
)
from sidecar.execution import Completed, Execution, Failed, RequiresAction

__all__ = [
    "PageQuery",
    "error_response",
    "json_response",
    "page_limit",
    "page_query",
    "read_json",
    "read_model",
    "to_wire",
]

MAX_PAGE = 200

M = TypeVar("M", bound=BaseModel)


async def read_json(request: Request) -> Any:
    """The request body as JSON; `BadRequest` for an empty or malformed body."""
    body = await request.body()
    if not body.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (RecursionError, ValueError) as exc:
        if not isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
            raise BadRequest(f"malformed JSON: {exc}", code="malformed_json") from None
        detail = (
            f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else "the body is not UTF-8"
        )
        raise BadRequest(f"malformed JSON: {detail}", code="malformed_json") from None


async def read_model(request: Request, model: type[M]) -> M:
    """The request body validated as `model`; `BadRequest` names the first wrong field."""
    body = await request.body()
    if b"NaN" in body or b"Infinity" in body:
        # Bare NaN/Infinity are not JSON, yet pydantic's parser takes them: parse strictly.
        try:
            return model.model_validate(await read_json(request))
        except ValidationError as exc:
            raise validation_error(exc) from None
    try:
        # Parsing and validating in one pass; a malformed body is told apart below.
        return model.model_validate_json(body)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid" or not body.strip():
            await read_json(request)  # raises the precise malformed-JSON error
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> BadRequest:
    """A `BadRequest` naming the first field that does not validate."""
    first = exc.errors()[0]
    # pydantic names union members in the location (`tool.dict[str,any]`): not fields.
    fields = [part for part in first["loc"] if not _union_tag(part)]
    where = ".".join(str(part) for part in fields)
    message = f"{where}: {first['msg']}" if where else first["msg"]
    return BadRequest(f"invalid request: {message}", param=where or None)


def json_response(model: BaseModel | dict[str, Any] | list[Any], status: int = 200) -> Response:
    """A JSON answer; models are written by pydantic, without nulls for optional fields."""
    if isinstance(model, BaseModel):
        content = model.model_dump_json(exclude_none=True).encode()
    else:
        content = json_bytes(model)
    return Response(content, status_code=status, media_type="application/json")


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON; what orjson refuses (integers past 64 bits, lone surrogates)
    takes the slow path, ASCII-escaped."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def error_response(error: SidecarError, headers: dict[str, str] | None = None) -> Response:
    """The `{"error": {type, code, message, param}, "message"}` answer of an error, with
    the headers its kind calls for (`Retry-After` on a 429 and while shutting down, the
    bearer challenge on a 401)."""
    headers = {**_headers_of(error), **(headers or {})} or None
    body = ErrorResponse(
        error=ErrorBody(type=error.type, code=error.code, message=error.message, param=error.param),
        message=error.message,
    )
    return Response(
        body.model_dump_json(),
        status_code=error.status,
        media_type="application/json",
        headers=headers,
    )


def _headers_of(error: SidecarError) -> dict[str, str]:
    if isinstance(error, TooManyRequests):
        return {"retry-after": str(error.retry_after)}
    if isinstance(error, ShuttingDown):
        return {"connection": "close", "retry-after": "1"}
    if isinstance(error, StoreUnavailable):
        return {"retry-after": "1"}
    if isinstance(error, Unauthorized):
        return {"www-authenticate": "Bearer"}
    return {}


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _union_tag(part: object) -> bool:
    return isinstance(part, str) and ("[" in part or part in _TYPE_TAGS)


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "function-after"})


def to_wire(execution: Execution) -> dict[str, Any]:
    """An execution as the API answers it: the `ExecuteResponse` shape, without nulls.

    A plain dict rather than the model: the model documents the contract (and a test
    holds every outcome to it), while this path, taken by every call, skips
    validating again what the typed pipeline built.
    """
    outcome = execution.outcome
    answer: dict[str, Any] = {
        "call_id": execution.call_id,
        "tool": execution.tool,
        "status": outcome.status,
    }
    match outcome:
        case Completed(result):
            answer["result"] = result
        case Failed(code, message, param):
            error = {"code": code, "message": message}
            answer["error"] = error if param is None else {**error, "param": param}
        case RequiresAction(call):
            answer["function_call"] = {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            }
    answer["duration_ms"] = execution.duration_ms
    return answer


def page_limit(raw: str | None) -> int:
    """`limit` as a whole number; orq's SDK sends its numbers as floats (`50.0`)."""
    if raw is None:
        return MAX_PAGE
    whole, _, fraction = raw.partition(".")
    if (
        not (whole.isascii() and whole.isdigit())
        or fraction.strip("0")
        or not 1 <= int(whole) <= MAX_PAGE
    ):
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}", param="limit")
    return int(whole)


PAGE_PARAMETERS = ("limit", "starting_after", "ending_before")


def _cursor(raw: str | None, name: str) -> str | None:
    if raw == "":
        raise BadRequest(f"{name} is empty: name a tool's id or key, or leave it out", param=name)
    return raw


@dataclass(frozen=True)
class PageQuery:
    """A list route's query: how many, and after or before which id or key."""

    limit: int
    starting_after: str | None
    ending_before: str | None


def page_query(request: Request) -> PageQuery:
    """`limit`, `starting_after` and `ending_before` of a list route (one cursor at most);
    each at most once, and a cursor not empty."""
    query = request.query_params
    for name in PAGE_PARAMETERS:
        if len(query.getlist(name)) > 1:
            raise BadRequest(f"{name} is given more than once", param=name)
    starting_after = _cursor(query.get("starting_after"), "starting_after")
    ending_before = _cursor(query.get("ending_before"), "ending_before")
    if starting_after and ending_before:
        raise BadRequest("use either starting_after or ending_before", param="ending_before")
    return PageQuery(page_limit(query.get("limit")), starting_after, ending_before)
