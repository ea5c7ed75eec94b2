"""Scripted fake model providers on loopback, answering in each service's own wire format.

One Starlette app served by uvicorn in a thread plays three services at once, each on
the path the real service uses under `<base_url>` (`http://127.0.0.1:PORT/v1`):

    POST /v1/chat/completions   OpenAI Chat Completions (JSON, or SSE ending `data: [DONE]`)
    POST /v1/responses          OpenAI Responses (JSON, or SSE of typed, numbered events)
    POST /v1/messages           Anthropic Messages (JSON, or SSE of typed events)

A test queues replies before it calls (`fake.reply(Text("hello"))`); each request takes
the next one and gets it rendered in the wire format it came in on, as JSON or, with
`"stream": true`, as server-sent events written one event per write. The same script
objects serve all three formats:

    Text, Reasoning, Call   blocks of a model turn (a lone block is a turn by itself)
    Turn, ToolCalls         a whole turn: its blocks in order, usage, how it ends
    Status                  an HTTP error in the wire's error format (Retry-After optional)
    Slow                    a pause before the first byte (or before event N of a stream),
                            ended early by `fake.release()`, the client leaving or shutdown
    Cut                     a stream that ends early (no terminal event, no `[DONE]`)
    StreamError             an error event inside a 200 stream

With no reply queued the fake answers 500 with an error body saying the script ran out.
Every request is recorded (method, path, headers, parsed JSON body) for assertions.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = [
    "Block",
    "Call",
    "Cut",
    "FakeProvider",
    "Reasoning",
    "Received",
    "Reply",
    "Slow",
    "Status",
    "StreamError",
    "Text",
    "ToolCalls",
    "Turn",
    "Usage",
    "Wire",
    "serve_fake_providers",
]

Wire: TypeAlias = Literal["chat", "responses", "messages"]

WIRES: dict[str, Wire] = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
}
FINGERPRINT = "fp_fake"
_POLL = 0.01


# --- the script ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Token counts of a turn, rendered in each wire's usage shape."""

    input_tokens: int = 20
    output_tokens: int = 10
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class Text:
    """Assistant text, streamed in `deltas` pieces of about equal length."""

    text: str
    deltas: int = 1

    def __post_init__(self) -> None:
        if self.deltas < 1:
            raise ValueError("a text needs at least one delta")


@dataclass(frozen=True)
class Reasoning:
    """The model's reasoning: Anthropic `thinking` (with `signature`), a Responses reasoning
    item (its summary, `signature` as `encrypted_content`), Chat `reasoning_content`."""

    text: str
    deltas: int = 1
    signature: str = "fake-signature"

    def __post_init__(self) -> None:
        if self.deltas < 1:
            raise ValueError("reasoning needs at least one delta")


@dataclass(frozen=True)
class Call:
    """A tool call; `arguments` is JSON text, streamed as `pieces`.

    `pieces` is a count (the arguments split in about equal parts) or the exact pieces,
    which must join to `arguments` and may include empty strings. A count of 0 sends no
    argument deltas: Responses has the arguments only in its `.done` events, Chat sends
    them whole in the call's first chunk, Anthropic (which always streams them) in one
    delta. A call whose arguments are `{}` streams on Anthropic as one empty
    `partial_json`, as the real service does for a tool without input.
    """

    name: str
    arguments: str = "{}"
    id: str | None = None
    pieces: int | Sequence[str] = 1

    def __post_init__(self) -> None:
        if isinstance(self.pieces, str):
            raise TypeError("pieces is a count or a sequence of strings, not a string")
        if isinstance(self.pieces, int):
            if self.pieces < 0:
                raise ValueError("pieces must not be negative")
            return
        pieces = tuple(self.pieces)
        if "".join(pieces) != self.arguments:
            raise ValueError(f"the pieces {pieces!r} do not join to {self.arguments!r}")
        object.__setattr__(self, "pieces", pieces)

    def argument_pieces(self) -> list[str]:
        """The argument deltas of the stream (none for a count of 0)."""
        if isinstance(self.pieces, int):
            return _split(self.arguments, self.pieces) if self.pieces else []
        return list(self.pieces)


Block: TypeAlias = Text | Reasoning | Call


class Turn:
    """One model turn: its blocks in order, its usage and how it ends.

    `truncated` ends it at the token limit (Chat `length`, Anthropic `max_tokens`,
    Responses `incomplete`). Chat only: `same_index` sends every tool call at `index` 0
    (each call still starts with a new id), and `usage_with_finish` puts the usage in the
    finish chunk instead of a chunk of its own after it.
    """

    def __init__(
        self,
        *blocks: Block,
        usage: Usage | None = None,
        truncated: bool = False,
        same_index: bool = False,
        usage_with_finish: bool = False,
    ) -> None:
        self.blocks: tuple[Block, ...] = blocks
        self.usage = usage or Usage()
        self.truncated = truncated
        self.same_index = same_index
        self.usage_with_finish = usage_with_finish

    @property
    def calls(self) -> list[Call]:
        return [block for block in self.blocks if isinstance(block, Call)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.blocks!r}"


class ToolCalls(Turn):
    """A turn that calls tools, after optional reasoning and text."""

    def __init__(
        self,
        calls: Sequence[Call],
        *,
        text: str | Text | None = None,
        reasoning: str | Reasoning | None = None,
        usage: Usage | None = None,
        truncated: bool = False,
        same_index: bool = False,
        usage_with_finish: bool = False,
    ) -> None:
        blocks: list[Block] = []
        if reasoning is not None:
            blocks.append(Reasoning(reasoning) if isinstance(reasoning, str) else reasoning)
        if text is not None:
            blocks.append(Text(text) if isinstance(text, str) else text)
        super().__init__(
            *blocks,
            *calls,
            usage=usage,
            truncated=truncated,
            same_index=same_index,
            usage_with_finish=usage_with_finish,
        )


@dataclass(frozen=True)
class Status:
    """An HTTP error with the wire's error body (or `body`, as given); `retry_after`
    sets the `Retry-After` header."""

    code: int
    retry_after: float | None = None
    message: str | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Slow:
    """`reply`, held for up to `seconds` first: before the first byte, or for a stream
    before its event number `after`. `FakeProvider.release()`, the client leaving or
    the server stopping end the wait early."""

    reply: Reply
    seconds: float = 30.0
    after: int = 0


@dataclass(frozen=True)
class Cut:
    """`reply` ended early: a stream stops after `after` events (by default just before
    its terminal events: the finish chunk, `response.completed`, `message_delta`), a JSON
    answer after half its body. `abrupt` drops the connection instead of ending the body."""

    reply: Reply
    after: int | None = None
    abrupt: bool = False


@dataclass(frozen=True)
class StreamError:
    """An error event inside a 200 stream, after `after` events of `reply` (by default
    just before its terminal events; with no reply, right after the stream opened).

    `status` picks the error's type (529 is Anthropic's `overloaded_error`); a request
    without `stream` gets that HTTP status and the wire's error body instead."""

    reply: Reply | None = None
    after: int | None = None
    status: int = 529
    message: str | None = None


Reply: TypeAlias = Text | Reasoning | Call | Turn | Status | Slow | Cut | StreamError


@dataclass
class _Plan:
    """A reply taken apart: the answer and what happens to it on the way."""

    answer: Turn | Status
    wait: float = 0.0
    wait_after: int = 0
    cut: Cut | None = None
    error: StreamError | None = None


def _plan(reply: Reply) -> _Plan:
    match reply:
        case Slow():
            plan = _plan(reply.reply)
            plan.wait, plan.wait_after = reply.seconds, reply.after
            return plan
        case Cut() | StreamError():
            inner = reply.reply if reply.reply is not None else Turn()
            plan = _plan(inner)
            if isinstance(plan.answer, Status):
                raise TypeError(f"{type(reply).__name__} needs a turn to act on, not a Status")
            if plan.cut is not None or plan.error is not None:
                raise TypeError("a reply takes one Cut or StreamError, not both")
            if isinstance(reply, Cut):
                plan.cut = reply
            else:
                plan.error = reply
            return plan
        case Status() | Turn():
            return _Plan(reply)
        case Call():
            return _Plan(ToolCalls([reply]))
        case Text() | Reasoning():
            return _Plan(Turn(reply))
    raise TypeError(f"not a reply: {reply!r}")


# --- what was received --------------------------------------------------------------------


@dataclass
class Received:
    """A request the fake received; `cancelled` turns true when the client went away
    before the answer ended."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any  # the parsed JSON body, None when it was not JSON
    raw: bytes
    wire: Wire | None
    cancelled: bool = False

    @property
    def json(self) -> dict[str, Any]:
        """The body, which must be a JSON object."""
        assert isinstance(self.body, dict), f"the body is not a JSON object: {self.raw!r}"
        return self.body

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class FakeProvider:
    """A running fake: its URLs, its script and what it received (safe across threads)."""

    def __init__(self) -> None:
        self.origin = ""  # http://127.0.0.1:PORT
        self._lock = threading.Lock()
        self._script: deque[_Plan] = deque()
        self._received: list[Received] = []
        self._count = 0  # requests ever received: numbers them (and their ids) uniquely
        self._releases = 0
        self._holding = 0
        self._stopping = threading.Event()

    @property
    def base_url(self) -> str:
        """The base URL of the services, `/v1` included."""
        return f"{self.origin}/v1"

    def reply(self, *replies: Reply) -> None:
        """Queue replies, taken in order by the requests to come."""
        plans = [_plan(reply) for reply in replies]
        with self._lock:
            self._script.extend(plans)

    @property
    def pending(self) -> int:
        """How many queued replies no request has taken yet."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[Received]:
        """Every request received, oldest first."""
        with self._lock:
            return list(self._received)

    def last(self, path: str | None = None) -> Received:
        """The latest request (on `path`, e.g. `/v1/messages`, when given)."""
        for received in reversed(self.requests):
            if path is None or received.path == path:
                return received
        raise AssertionError(f"the fake received nothing{f' on {path}' if path else ''}")

    @property
    def holding(self) -> int:
        """How many requests a `Slow` reply holds right now."""
        with self._lock:
            return self._holding

    def release(self) -> None:
        """End the waits of the `Slow` replies holding requests now (later ones still wait)."""
        with self._lock:
            self._releases += 1

    def reset(self) -> None:
        """Forget the script and the requests received (ids stay unique)."""
        with self._lock:
            self._script.clear()
            self._received.clear()

    def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until `condition()` holds (for tests that are not async)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the condition did not hold within {timeout} s")
            time.sleep(_POLL)

    async def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `condition()` holds, without blocking the event loop."""
        with anyio.fail_after(timeout):
            while not condition():
                await anyio.sleep(_POLL)

    def _take(self, received: Received, scripted: bool) -> tuple[int, _Plan | None]:
        with self._lock:
            self._received.append(received)
            self._count += 1
            plan = self._script.popleft() if scripted and self._script else None
            return self._count, plan

    async def _hold(
        self, seconds: float, received: Received, left: Callable[[], Awaitable[bool]] | None
    ) -> bool:
        """Wait for `seconds` or until released; False when the client left meanwhile."""
        with self._lock:
            generation = self._releases
            self._holding += 1
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self._stopping.is_set():
                with self._lock:
                    if self._releases != generation:
                        break
                if left is not None and await left():
                    received.cancelled = True
                    return False
                await anyio.sleep(_POLL)
            return True
        finally:
            with self._lock:
                self._holding -= 1


# --- rendering ----------------------------------------------------------------------------


def _split(text: str, count: int) -> list[str]:
    """`text` in exactly `count` pieces of about equal length (some empty if it is short)."""
    size = len(text)
    return [text[size * n // count : size * (n + 1) // count] for n in range(count)]


def _compact(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _data(data: Any) -> bytes:
    return f"data: {_compact(data)}\n\n".encode()


def _typed(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {_compact(data)}\n\n".encode()


@dataclass(frozen=True)
class _Context:
    """What a rendering needs of the request."""

    body: dict[str, Any]
    number: int
    created: int

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "fake-model")

    def call_id(self, turn: Turn, position: int, prefix: str) -> str:
        """The id of the call at `position` of `turn`: its own, or one made of the request's
        number and the call's ordinal (`call_fake3x0` is the first call answering request 3)."""
        call = turn.blocks[position]
        assert isinstance(call, Call)
        ordinal = sum(isinstance(block, Call) for block in turn.blocks[:position])
        return call.id or f"{prefix}fake{self.number}x{ordinal}"


@dataclass
class _Stream:
    """A rendered stream: its events, how many open it, where the terminal ones start."""

    events: list[bytes]
    opening: int
    terminal: int


class _Format(Protocol):
    def answer(self, turn: Turn, context: _Context) -> bytes: ...
    def stream(self, turn: Turn, context: _Context) -> _Stream: ...
    def error_body(self, status: int, message: str | None) -> dict[str, Any]: ...
    def stream_error(self, status: int, message: str | None, sequence: int) -> bytes: ...
    def request_id(self, number: int) -> tuple[str, str]: ...


_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _openai_error(status: int, message: str | None) -> dict[str, Any]:
    kind, code, text = _OPENAI_ERRORS.get(
        status,
        ("server_error", None, "The server is overloaded.")
        if status >= 500
        else ("invalid_request_error", None, "Invalid request."),
    )
    return {"error": {"message": message or text, "type": kind, "param": None, "code": code}}


def _chat_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_finish(turn: Turn) -> str:
    if turn.truncated:
        return "length"
    return "tool_calls" if turn.calls else "stop"


class _Chat:
    """OpenAI Chat Completions; reasoning goes in `reasoning_content`, as DeepSeek sends it."""

    def answer(self, turn: Turn, context: _Context) -> bytes:
        text = "".join(block.text for block in turn.blocks if isinstance(block, Text))
        reasoning = "".join(block.text for block in turn.blocks if isinstance(block, Reasoning))
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if reasoning:
            message["reasoning_content"] = reasoning
        if turn.calls:
            message["tool_calls"] = [
                {
                    "id": context.call_id(turn, position, "call_"),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for position, call in enumerate(turn.blocks)
                if isinstance(call, Call)
            ]
        message |= {"refusal": None, "annotations": []}
        answer = {
            "id": f"chatcmpl-fake{context.number}",
            "object": "chat.completion",
            "created": context.created,
            "model": context.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _chat_finish(turn),
                }
            ],
            "usage": _chat_usage(turn.usage),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
        return json.dumps(answer, ensure_ascii=False, indent=2).encode()

    def stream(self, turn: Turn, context: _Context) -> _Stream:
        options = context.body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True

        def chunk(
            delta: dict[str, Any], finish: str | None = None, usage: Usage | None = None
        ) -> bytes:
            data: dict[str, Any] = {
                "id": f"chatcmpl-fake{context.number}",
                "object": "chat.completion.chunk",
                "created": context.created,
                "model": context.model,
                "system_fingerprint": FINGERPRINT,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if usage is not None:
                data["usage"] = _chat_usage(usage)
            elif include_usage:
                data["usage"] = None
            return _data(data)

        events: list[bytes] = []
        calls = 0
        for position, block in enumerate(turn.blocks):
            first = position == 0
            match block:
                case Text():
                    if first:
                        events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
                    events += [
                        chunk({"content": piece}) for piece in _split(block.text, block.deltas)
                    ]
                case Reasoning():
                    if first:
                        opening = {"role": "assistant", "content": None, "reasoning_content": ""}
                        events.append(chunk(opening))
                    events += [
                        chunk({"content": None, "reasoning_content": piece})
                        for piece in _split(block.text, block.deltas)
                    ]
                case Call():
                    index = 0 if turn.same_index else calls
                    pieces = block.argument_pieces()
                    head = {
                        "index": index,
                        "id": context.call_id(turn, position, "call_"),
                        "type": "function",
                        "function": {
                            "name": block.name,
                            "arguments": "" if pieces else block.arguments,
                        },
                    }
                    delta: dict[str, Any] = {"tool_calls": [head]}
                    if first:
                        delta = {"role": "assistant", "content": None, **delta, "refusal": None}
                    events.append(chunk(delta))
                    events += [
                        chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                        for piece in pieces
                    ]
                    calls += 1
        if not turn.blocks:
            events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        terminal = len(events)
        with_finish = turn.usage if turn.usage_with_finish else None
        events.append(chunk({}, _chat_finish(turn), with_finish))
        if include_usage and not turn.usage_with_finish:
            usage_chunk = {
                "id": f"chatcmpl-fake{context.number}",
                "object": "chat.completion.chunk",
                "created": context.created,
                "model": context.model,
                "system_fingerprint": FINGERPRINT,
                "choices": [],
                "usage": _chat_usage(turn.usage),
            }
            events.append(_data(usage_chunk))
        events.append(b"data: [DONE]\n\n")
        return _Stream(events, 0, terminal)

    def error_body(self, status: int, message: str | None) -> dict[str, Any]:
        return _openai_error(status, message)

    def stream_error(self, status: int, message: str | None, sequence: int) -> bytes:
        return _data(_openai_error(status, message))

    def request_id(self, number: int) -> tuple[str, str]:
        return "x-request-id", f"req_fake{number}"


class _Responses:
    """OpenAI Responses."""

    def _response(
        self,
        context: _Context,
        status: str,
        output: list[dict[str, Any]],
        usage: Usage | None,
    ) -> dict[str, Any]:
        body = context.body
        return {
            "id": f"resp_fake{context.number}",
            "object": "response",
            "created_at": context.created,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": (
                {"reason": "max_output_tokens"} if status == "incomplete" else None
            ),
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": context.model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": None if usage is None else self._usage(usage),
            "user": None,
            "metadata": body.get("metadata") or {},
        }

    @staticmethod
    def _usage(usage: Usage) -> dict[str, Any]:
        return {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        }

    @staticmethod
    def _item(block: Block, item_id: str, call_id: str, done: bool) -> dict[str, Any]:
        """An output item as `output_item.added` (not `done`) or `.done` carries it."""
        match block:
            case Reasoning():
                summary = [{"type": "summary_text", "text": block.text}] if done else []
                item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": summary}
                if block.signature:
                    item["encrypted_content"] = block.signature
                return item
            case Text():
                part = {
                    "type": "output_text",
                    "annotations": [],
                    "logprobs": [],
                    "text": block.text,
                }
                return {
                    "id": item_id,
                    "type": "message",
                    "status": "completed" if done else "in_progress",
                    "content": [part] if done else [],
                    "role": "assistant",
                }
            case Call():
                return {
                    "id": item_id,
                    "type": "function_call",
                    "status": "completed" if done else "in_progress",
                    "arguments": block.arguments if done else "",
                    "call_id": call_id,
                    "name": block.name,
                }

    def _items(self, turn: Turn, context: _Context) -> list[tuple[Block, str, str]]:
        """Each block with its item id and call id."""
        prefixes = {Reasoning: "rs_", Text: "msg_", Call: "fc_"}
        items = []
        for position, block in enumerate(turn.blocks):
            item_id = f"{prefixes[type(block)]}fake{context.number}x{position}"
            call_id = context.call_id(turn, position, "call_") if isinstance(block, Call) else ""
            items.append((block, item_id, call_id))
        return items

    def answer(self, turn: Turn, context: _Context) -> bytes:
        output = [self._item(*item, done=True) for item in self._items(turn, context)]
        status = "incomplete" if turn.truncated else "completed"
        response = self._response(context, status, output, turn.usage)
        return json.dumps(response, ensure_ascii=False, indent=2).encode()

    def stream(self, turn: Turn, context: _Context) -> _Stream:
        events: list[bytes] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append(_typed({"type": kind, "sequence_number": len(events), **fields}))

        emit("response.created", response=self._response(context, "in_progress", [], None))
        emit("response.in_progress", response=self._response(context, "in_progress", [], None))
        opening = len(events)
        output = []
        for index, (block, item_id, call_id) in enumerate(self._items(turn, context)):
            at = {"item_id": item_id, "output_index": index}
            emit(
                "response.output_item.added",
                output_index=index,
                item=self._item(block, item_id, call_id, done=False),
            )
            match block:
                case Reasoning():
                    summary = {"summary_index": 0}
                    empty = {"type": "summary_text", "text": ""}
                    whole = {"type": "summary_text", "text": block.text}
                    emit("response.reasoning_summary_part.added", **at, **summary, part=empty)
                    for piece in _split(block.text, block.deltas):
                        emit("response.reasoning_summary_text.delta", **at, **summary, delta=piece)
                    emit("response.reasoning_summary_text.done", **at, **summary, text=block.text)
                    emit("response.reasoning_summary_part.done", **at, **summary, part=whole)
                case Text():
                    part = {"type": "output_text", "annotations": [], "logprobs": []}
                    content = {"content_index": 0}
                    emit("response.content_part.added", **at, **content, part=part | {"text": ""})
                    for piece in _split(block.text, block.deltas):
                        emit(
                            "response.output_text.delta", **at, **content, delta=piece, logprobs=[]
                        )
                    emit("response.output_text.done", **at, **content, text=block.text, logprobs=[])
                    emit(
                        "response.content_part.done",
                        **at,
                        **content,
                        part=part | {"text": block.text},
                    )
                case Call():
                    for piece in block.argument_pieces():
                        emit("response.function_call_arguments.delta", **at, delta=piece)
                    emit("response.function_call_arguments.done", **at, arguments=block.arguments)
            item = self._item(block, item_id, call_id, done=True)
            output.append(item)
            emit("response.output_item.done", output_index=index, item=item)
        terminal = len(events)
        status = "incomplete" if turn.truncated else "completed"
        final = self._response(context, status, output, turn.usage)
        emit(f"response.{status}", response=final)
        return _Stream(events, opening, terminal)

    def error_body(self, status: int, message: str | None) -> dict[str, Any]:
        return _openai_error(status, message)

    def stream_error(self, status: int, message: str | None, sequence: int) -> bytes:
        # As the service sends it (the reference documents `code` and `message` at the top).
        kind = "too_many_requests" if status == 429 else "server_error"
        text = message or _openai_error(status, None)["error"]["message"]
        error = {"type": kind, "code": kind, "message": text, "param": None}
        return _typed({"type": "error", "sequence_number": sequence, "error": error})

    def request_id(self, number: int) -> tuple[str, str]:
        return "x-request-id", f"req_fake{number}"


_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Billing issue."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}


def _anthropic_error(status: int, message: str | None) -> dict[str, Any]:
    kind, text = _ANTHROPIC_ERRORS.get(
        status,
        ("api_error", "Internal server error")
        if status >= 500
        else ("invalid_request_error", "Invalid request."),
    )
    return {"type": "error", "error": {"type": kind, "message": message or text}}


class _Messages:
    """Anthropic Messages."""

    @staticmethod
    def _stop(turn: Turn) -> str:
        if turn.truncated:
            return "max_tokens"
        return "tool_use" if turn.calls else "end_turn"

    @staticmethod
    def _usage(usage: Usage, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": usage.cached_tokens,
            "output_tokens": output_tokens,
        }

    def _message(self, turn: Turn, context: _Context, content: list[Any], done: bool) -> Any:
        return {
            "id": f"msg_fake{context.number}",
            "type": "message",
            "role": "assistant",
            "model": context.model,
            "content": content,
            "stop_reason": self._stop(turn) if done else None,
            "stop_sequence": None,
            "usage": self._usage(turn.usage, turn.usage.output_tokens if done else 1),
        }

    def answer(self, turn: Turn, context: _Context) -> bytes:
        content: list[dict[str, Any]] = []
        for position, block in enumerate(turn.blocks):
            match block:
                case Text():
                    content.append({"type": "text", "text": block.text})
                case Reasoning():
                    thinking = {"thinking": block.text, "signature": block.signature}
                    content.append({"type": "thinking", **thinking})
                case Call():
                    try:
                        arguments = json.loads(block.arguments or "{}")
                    except ValueError as error:
                        raise ValueError(f"Anthropic's input must be JSON: {error}") from error
                    content.append(
                        {
                            "type": "tool_use",
                            "id": context.call_id(turn, position, "toolu_"),
                            "name": block.name,
                            "input": arguments,
                        }
                    )
        return _compact(self._message(turn, context, content, done=True)).encode()

    def stream(self, turn: Turn, context: _Context) -> _Stream:
        events: list[bytes] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append(_typed({"type": kind, **fields}))

        emit("message_start", message=self._message(turn, context, [], done=False))
        opening = len(events)
        for index, block in enumerate(turn.blocks):
            deltas: list[dict[str, Any]]
            match block:
                case Text():
                    start: dict[str, Any] = {"type": "text", "text": ""}
                    pieces = _split(block.text, block.deltas)
                    deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
                case Reasoning():
                    start = {"type": "thinking", "thinking": "", "signature": ""}
                    pieces = _split(block.text, block.deltas)
                    deltas = [{"type": "thinking_delta", "thinking": piece} for piece in pieces]
                    if block.signature:
                        deltas.append({"type": "signature_delta", "signature": block.signature})
                case Call():
                    call_id = context.call_id(turn, index, "toolu_")
                    start = {"type": "tool_use", "id": call_id, "name": block.name, "input": {}}
                    pieces = block.argument_pieces()
                    if isinstance(block.pieces, int) and block.arguments.strip() in ("", "{}"):
                        pieces = [""]
                    deltas = [
                        {"type": "input_json_delta", "partial_json": piece}
                        for piece in pieces or [block.arguments]
                    ]
            emit("content_block_start", index=index, content_block=start)
            if index == 0:
                emit("ping")
            events.extend(
                _typed({"type": "content_block_delta", "index": index, "delta": delta})
                for delta in deltas
            )
            emit("content_block_stop", index=index)
        terminal = len(events)
        stop = {"stop_reason": self._stop(turn), "stop_sequence": None}
        emit("message_delta", delta=stop, usage={"output_tokens": turn.usage.output_tokens})
        emit("message_stop")
        return _Stream(events, opening, terminal)

    def error_body(self, status: int, message: str | None) -> dict[str, Any]:
        return _anthropic_error(status, message)

    def stream_error(self, status: int, message: str | None, sequence: int) -> bytes:
        return _typed(_anthropic_error(status, message))

    def request_id(self, number: int) -> tuple[str, str]:
        return "request-id", f"req_fake{number}"


_FORMATS: dict[Wire, _Format] = {
    "chat": _Chat(),
    "responses": _Responses(),
    "messages": _Messages(),
}


# --- the server ---------------------------------------------------------------------------


def _headers(pairs: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in pairs.items()
    ]


class _EventStream(Response):
    """A 200 event stream written one event per write; it notes a client that leaves."""

    def __init__(
        self,
        fake: FakeProvider,
        received: Received,
        events: list[bytes],
        headers: dict[str, str],
        *,
        pause: tuple[int, float] | None = None,
        complete: bool = True,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = _headers(
            {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
            | headers
        )
        self._fake = fake
        self._received = received
        self._events = events
        self._pause = pause
        self._complete = complete
        self._done = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch, receive, group.cancel_scope)
            for index in range(len(self._events) + 1):
                if self._pause is not None and index == self._pause[0]:
                    await self._fake._hold(self._pause[1], self._received, None)
                if index < len(self._events):
                    body = self._events[index]
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            self._done = True
            if self._complete:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            group.cancel_scope.cancel()
        # Returning with the body unfinished makes uvicorn drop the connection.

    async def _watch(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self._done:
            self._received.cancelled = True
            scope.cancel()


class _Partial(Response):
    """A JSON answer announced whole, of which only the start is sent before the connection
    drops."""

    def __init__(self, body: bytes, length: int, headers: dict[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = _headers(
            {"content-type": "application/json", "content-length": str(length)} | headers
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})


def _json(data: Any, status: int, wire: Wire | None, headers: dict[str, str]) -> Response:
    pretty = wire != "messages"  # OpenAI indents its JSON answers, Anthropic does not
    text = json.dumps(data, ensure_ascii=False, indent=2) if pretty else _compact(data)
    return Response(text.encode(), status, headers, media_type="application/json")


def _status(form: _Format, wire: Wire, status: Status, headers: dict[str, str]) -> Response:
    headers = headers | status.headers
    if status.retry_after is not None:
        seconds = status.retry_after
        headers["retry-after"] = str(int(seconds) if seconds == int(seconds) else seconds)
    data = status.body if status.body is not None else form.error_body(status.code, status.message)
    return _json(data, status.code, wire, headers)


def _whole(plan: _Plan, answer: bytes, headers: dict[str, str]) -> Response:
    """A JSON answer, whole or cut."""
    if plan.cut is None:
        return Response(answer, 200, headers, media_type="application/json")
    half = answer[: len(answer) // 2]
    if plan.cut.abrupt:
        return _Partial(half, len(answer), headers)
    return Response(half, 200, headers, media_type="application/json")


def _events(plan: _Plan, form: _Format, stream: _Stream) -> list[bytes]:
    """The events a stream sends: all of them, or cut, or ended by an error event."""
    if plan.cut is not None:
        return stream.events[: stream.terminal if plan.cut.after is None else plan.cut.after]
    if plan.error is not None:
        failure = plan.error
        default = stream.opening if failure.reply is None else stream.terminal
        kept = default if failure.after is None else failure.after
        return [*stream.events[:kept], form.stream_error(failure.status, failure.message, kept)]
    return stream.events


def _app(fake: FakeProvider) -> Starlette:
    async def answer(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = request.url.path
        wire = WIRES.get(path) if request.method == "POST" else None
        received = Received(request.method, path, dict(request.headers), body, raw, wire)
        number, plan = fake._take(received, scripted=wire is not None and isinstance(body, dict))
        if wire is None:
            message = f"fake provider: no endpoint {request.method} {path}"
            return _json(_openai_error(404, message), 404, None, {})
        form = _FORMATS[wire]
        name, value = form.request_id(number)
        ids = {name: value}
        if not isinstance(body, dict):
            message = "fake provider: the request body is not a JSON object"
            return _json(form.error_body(400, message), 400, wire, ids)
        if plan is None:
            message = (
                f"fake provider: the script ran out: no reply queued for request {number} "
                f"({request.method} {path}); queue one with FakeProvider.reply()"
            )
            return _json(form.error_body(500, message), 500, wire, ids)
        streaming = body.get("stream") is True
        before_start = plan.wait and (plan.wait_after == 0 or not streaming)
        if before_start and not await fake._hold(plan.wait, received, request.is_disconnected):
            return Response(status_code=499)  # nobody is left to read it
        if isinstance(plan.answer, Status):
            return _status(form, wire, plan.answer, ids)
        if plan.error is not None and not streaming:
            failure = plan.error
            return _json(
                form.error_body(failure.status, failure.message), failure.status, wire, ids
            )
        context = _Context(body, number, int(time.time()))
        try:
            if not streaming:
                return _whole(plan, form.answer(plan.answer, context), ids)
            stream = form.stream(plan.answer, context)
        except ValueError as error:
            message = f"fake provider: cannot render {plan.answer!r}: {error}"
            return _json(form.error_body(500, message), 500, wire, ids)
        pause = (plan.wait_after, plan.wait) if plan.wait and plan.wait_after else None
        complete = plan.cut is None or not plan.cut.abrupt
        events = _events(plan, form, stream)
        return _EventStream(fake, received, events, ids, pause=pause, complete=complete)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", answer, methods=methods)])


@contextmanager
def serve_fake_providers() -> Iterator[FakeProvider]:
    """Run the fake providers with uvicorn in a thread on 127.0.0.1; stop them on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # listening now: requests queue until uvicorn accepts them
    fake = FakeProvider()
    fake.origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        _app(fake),
        log_config=None,
        access_log=False,
        lifespan="off",
        loop="asyncio",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the fake providers did not start")
            time.sleep(_POLL)
        yield fake
    finally:
        fake._stopping.set()  # ends the waits of slow replies, so stopping is quick
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
