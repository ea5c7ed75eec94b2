"""The conversation as the core keeps it: provider-neutral items, in the order they happened.

The stored history of a response is a tuple of these, so that a continuation or a
fallback can go to another provider and keep the whole conversation; each provider
adapter maps them to its own wire format and back.

    MessageItem         a message of the user, the system or the assistant (text, images)
    FunctionCallItem    the model asked for a tool call
    FunctionOutputItem  what the call gave back, as the model will read it
    ReasoningItem       the model's reasoning (a summary, and what the provider needs back)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "FunctionCallItem",
    "FunctionOutputItem",
    "ImagePart",
    "Item",
    "MessageItem",
    "Part",
    "ReasoningItem",
    "Role",
    "TextPart",
    "text_of",
]

Role: TypeAlias = Literal["system", "developer", "user", "assistant"]


@dataclass(frozen=True)
class TextPart:
    """Text of a message."""

    text: str


@dataclass(frozen=True)
class ImagePart:
    """An image of a message: an `https:` or a `data:` URL."""

    url: str
    detail: str | None = None


Part: TypeAlias = TextPart | ImagePart


@dataclass(frozen=True)
class MessageItem:
    """A message; `id` is set on the assistant's messages."""

    role: Role
    parts: tuple[Part, ...]
    id: str | None = None


@dataclass(frozen=True)
class FunctionCallItem:
    """The model's call of a tool: `arguments` is a JSON text."""

    call_id: str
    name: str
    arguments: str
    id: str | None = None


@dataclass(frozen=True)
class FunctionOutputItem:
    """What a tool call gave back (its result, or its error, as JSON text)."""

    call_id: str
    output: str


@dataclass(frozen=True)
class ReasoningItem:
    """The model's reasoning: its summary text, and the opaque part a provider wants back
    (Anthropic's signature, OpenAI's encrypted content), kept for that provider only."""

    summary: str
    id: str | None = None
    opaque: str | None = None
    provider: str | None = None


Item: TypeAlias = MessageItem | FunctionCallItem | FunctionOutputItem | ReasoningItem


def text_of(message: MessageItem) -> str:
    """The text parts of a message, joined."""
    return "".join(part.text for part in message.parts if isinstance(part, TextPart))
