"""The one narrow protocol every provider adapter implements, and what crosses it.

A `Provider` streams one model turn as `ModelEvent`s: text deltas, reasoning deltas,
tool calls (started, argument deltas, done), usage and the finish. Vendor facts (wire
shapes, header names, error bodies) stay inside each adapter; the core sees only
these types. `TurnBuilder` folds the events of a turn into its items.

    ProviderError        a call that failed; `retryable` and `retry_after` for routing
    └── ProviderTimeout  the provider did not answer in time
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeAlias

from sidecar.llm.items import FunctionCallItem, Item, MessageItem, ReasoningItem, TextPart
from tools.base import FunctionDefinition

__all__ = [
    "Finish",
    "ModelEvent",
    "ModelRequest",
    "ModelTurn",
    "NamedTool",
    "Provider",
    "ProviderError",
    "ProviderTimeout",
    "ReasoningDelta",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallStart",
    "ToolChoice",
    "TurnBuilder",
    "Usage",
]

FinishReason: TypeAlias = Literal["stop", "tool_calls", "length", "content_filter"]


@dataclass(frozen=True)
class NamedTool:
    """`tool_choice` naming one function."""

    name: str


ToolChoice: TypeAlias = Literal["auto", "none", "required"] | NamedTool


@dataclass(frozen=True)
class ModelRequest:
    """One turn to ask a model for."""

    model: str
    items: tuple[Item, ...]
    instructions: str | None = None
    tools: tuple[FunctionDefinition, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    json_schema: tuple[str, dict[str, object], bool] | None = None  # name, schema, strict
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    reasoning_effort: str | None = None
    timeout: float | None = None  # seconds for the whole call


@dataclass(frozen=True)
class Usage:
    """Tokens of one call (or a run's sum)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(frozen=True)
class TextDelta:
    """More of the assistant's text."""

    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """More of the reasoning summary; `opaque` is what the provider wants back with it."""

    text: str = ""
    opaque: str | None = None


@dataclass(frozen=True)
class ToolCallStart:
    """A tool call begins; `index` tells it apart from the turn's other calls."""

    index: int
    call_id: str
    name: str


@dataclass(frozen=True)
class ToolCallDelta:
    """More of a tool call's arguments (JSON text)."""

    index: int
    arguments: str


@dataclass(frozen=True)
class Finish:
    """The turn is over: why, and the usage when the provider told it."""

    reason: FinishReason
    usage: Usage | None = None


ModelEvent: TypeAlias = TextDelta | ReasoningDelta | ToolCallStart | ToolCallDelta | Usage | Finish


class ProviderError(Exception):
    """A provider call that failed; the message never holds the provider's key."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "provider_error",
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    """The provider did not answer within the call's time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="provider_timeout", retryable=True)


class Provider(Protocol):
    """A model behind one wire format."""

    @property
    def reasoning_provider(self) -> str:
        """Whose opaque reasoning its turns carry, and which it takes back (`anthropic`...)."""
        ...

    def stream(self, request: ModelRequest, *, streaming: bool = True) -> AsyncIterator[ModelEvent]:
        """The turn's events; raises `ProviderError` (before or while streaming).

        `streaming=False` asks the provider for the whole turn in one answer (a cheaper
        call when nobody reads the deltas); the events are the same, fewer and larger.
        """
        ...


@dataclass
class _CallParts:
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelTurn:
    """What one turn produced, in order: reasoning, text, tool calls."""

    items: tuple[Item, ...]
    usage: Usage
    finish: FinishReason


class TurnBuilder:
    """Folds a turn's events into its items (ids assigned by `new_id`)."""

    def __init__(self, provider: str | None = None) -> None:
        self._provider = provider
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._opaque: str | None = None
        self._calls: list[_CallParts] = []
        self._at: dict[int, _CallParts] = {}  # the provider's index: the call it names now
        self.usage = Usage()
        self.finish: FinishReason | None = None

    def add(self, event: ModelEvent) -> None:
        """Take one event."""
        match event:
            case TextDelta(text):
                self._text.append(text)
            case ReasoningDelta(text, opaque):
                self._reasoning.append(text)
                self._opaque = opaque if opaque is not None else self._opaque
            case ToolCallStart(index, call_id, name):
                parts = self._at.get(index)
                # Some providers send every parallel call as index 0: a new id is a new call.
                if parts is None or (parts.call_id and call_id and call_id != parts.call_id):
                    parts = self._open(index)
                parts.call_id = parts.call_id or call_id
                parts.name = parts.name or name
            case ToolCallDelta(index, arguments):
                (self._at.get(index) or self._open(index)).arguments.append(arguments)
            case Usage():
                self.usage = event
            case Finish(reason, usage):
                self.finish = reason
                if usage is not None:
                    self.usage = usage

    def _open(self, index: int) -> _CallParts:
        parts = _CallParts()
        self._calls.append(parts)
        self._at[index] = parts
        return parts

    @property
    def text(self) -> str:
        """The assistant's text so far."""
        return "".join(self._text)

    def turn(self) -> ModelTurn:
        """The items of the turn; a turn that called tools finishes as `tool_calls`."""
        items: list[Item] = []
        reasoning = "".join(self._reasoning)
        if reasoning or self._opaque:
            items.append(ReasoningItem(reasoning, opaque=self._opaque, provider=self._provider))
        if self._text:
            items.append(MessageItem("assistant", (TextPart(self.text),)))
        for parts in self._calls:
            arguments = "".join(parts.arguments) or "{}"
            items.append(FunctionCallItem(parts.call_id, parts.name, arguments))
        finish: FinishReason = self.finish or "stop"
        if self._calls and finish == "stop":
            finish = "tool_calls"
        return ModelTurn(tuple(items), self.usage, finish)
