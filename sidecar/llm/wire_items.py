"""Items on the Responses wire: `input` read into the core's items, output items written.

Input: a string, or items: `message` (content a string or `input_text` / `input_image`
/ `output_text` parts), `function_call`, `function_call_output`, `reasoning`, and the
items this service answers with (`orq:*` tool items, `mcp_call`), which a client may
send back as it got them; `item_reference` is resolved against the stored history.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sidecar.errors import BadRequest
from sidecar.llm.items import (
    FunctionCallItem,
    FunctionOutputItem,
    ImagePart,
    Item,
    MessageItem,
    Part,
    ReasoningItem,
    TextPart,
    text_of,
)

__all__ = [
    "function_call_item",
    "message_item",
    "parse_input",
    "reasoning_item",
    "tool_item",
]

_ROLES: frozenset[str] = frozenset({"system", "developer", "user", "assistant"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text"})


def parse_input(
    raw: str | list[dict[str, Any]], lookup: Callable[[str], tuple[Item, ...] | None]
) -> tuple[Item, ...]:
    """The request's `input` as items; `lookup` finds an `item_reference` in the history."""
    if isinstance(raw, str):
        return (MessageItem("user", (TextPart(raw),)),) if raw else ()
    items: list[Item] = []
    for index, entry in enumerate(raw):
        items.extend(_item(entry, f"input.{index}", lookup))
    return tuple(items)


def _item(
    entry: Mapping[str, Any], where: str, lookup: Callable[[str], tuple[Item, ...] | None]
) -> tuple[Item, ...]:
    kind = entry.get("type") or ("message" if "role" in entry else None)
    match kind:
        case "message":
            return (_message(entry, where),)
        case "function_call":
            return (
                FunctionCallItem(
                    _text(entry, "call_id", where),
                    _text(entry, "name", where),
                    _arguments(entry.get("arguments"), where),
                    entry.get("id"),
                ),
            )
        case "function_call_output":
            return (
                FunctionOutputItem(_text(entry, "call_id", where), _output(entry.get("output"))),
            )
        case "reasoning":
            summary = "".join(
                str(part.get("text", ""))
                for part in entry.get("summary") or []
                if isinstance(part, dict)
            )
            return (ReasoningItem(summary, entry.get("id")),)
        case "mcp_call":
            call_id = _text(entry, "id", where)
            output = entry.get("error") if entry.get("error") else entry.get("output")
            return (
                FunctionCallItem(
                    call_id, _text(entry, "name", where), _arguments(entry.get("arguments"), where)
                ),
                FunctionOutputItem(call_id, _output(output)),
            )
        case "mcp_approval_response" | "mcp_approval_request":
            return ()  # decisions are read apart (approvals.parse_decisions); requests echoed
        case "item_reference":
            found = lookup(_text(entry, "id", where))
            if found is None:
                raise BadRequest(
                    f"{where}: no item with id {entry.get('id')!r} in the history",
                    param=f"{where}.id",
                )
            return found
        case str() as orq if orq.startswith("orq:"):
            call_id = _text(entry, "call_id", where)
            result = (
                entry.get("result") if entry.get("status") == "completed" else entry.get("error")
            )
            return (
                FunctionCallItem(
                    call_id, _text(entry, "name", where), _arguments(entry.get("arguments"), where)
                ),
                FunctionOutputItem(call_id, _output(result)),
            )
    raise BadRequest(f"{where}: unknown input item type {kind!r}", param=f"{where}.type")


def _message(entry: Mapping[str, Any], where: str) -> MessageItem:
    role = entry.get("role")
    if role not in _ROLES:
        raise BadRequest(f"{where}.role must be one of {sorted(_ROLES)}", param=f"{where}.role")
    content = entry.get("content")
    if isinstance(content, str):
        parts: tuple[Part, ...] = (TextPart(content),)
    elif isinstance(content, list):
        parts = tuple(_part(part, f"{where}.content.{i}") for i, part in enumerate(content))
    else:
        raise BadRequest(
            f"{where}.content must be a string or a list of parts", param=f"{where}.content"
        )
    return MessageItem(role, parts, entry.get("id"))


def _part(part: Any, where: str) -> Part:
    if not isinstance(part, dict):
        raise BadRequest(f"{where} must be an object", param=where)
    kind = part.get("type")
    if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
        return TextPart(part["text"])
    if kind == "input_image":
        url = part.get("image_url")
        if isinstance(url, dict):  # the chat completions spelling, accepted too
            url = url.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:image/")):
            raise BadRequest(
                f"{where}.image_url must be an http(s) URL or a data:image/ URL",
                param=f"{where}.image_url",
            )
        return ImagePart(url, part.get("detail"))
    if kind == "input_file":
        raise BadRequest(
            f"{where}: input_file is not supported by this service",
            param=where,
            code="unsupported_parameter",
        )
    raise BadRequest(f"{where}: unknown content part type {kind!r}", param=f"{where}.type")


def _text(entry: Mapping[str, Any], name: str, where: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{where}.{name} must be a non-empty string", param=f"{where}.{name}")
    return value


def _arguments(value: Any, where: str) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _output(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# Output items, as the service answers them.


def message_item(item: MessageItem, item_id: str) -> dict[str, Any]:
    """An assistant message."""
    return {
        "type": "message",
        "id": item_id,
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text_of(item), "annotations": []}],
    }


def reasoning_item(item: ReasoningItem, item_id: str) -> dict[str, Any]:
    """The model's reasoning summary."""
    summary = [{"type": "summary_text", "text": item.summary}] if item.summary else []
    return {"type": "reasoning", "id": item_id, "summary": summary}


def function_call_item(
    item: FunctionCallItem, item_id: str, status: str = "completed"
) -> dict[str, Any]:
    """A call of a function tool, for the client to run."""
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": item.call_id,
        "name": item.name,
        "arguments": item.arguments,
        "status": status,
    }


def tool_item(
    kind: str,
    item: FunctionCallItem,
    item_id: str,
    *,
    status: str,
    result: Any = None,
    error: Mapping[str, str] | None = None,
    server_label: str | None = None,
) -> dict[str, Any]:
    """A server-side tool the model called and the service ran: typed by the tool."""
    if kind == "mcp":
        return {
            "type": "mcp_call",
            "id": item_id,
            "server_label": server_label or "",
            "name": item.name,
            "arguments": item.arguments,
            "output": None if result is None else json.dumps(result, ensure_ascii=False),
            "error": None if error is None else f"{error['code']}: {error['message']}",
            "status": status,
        }
    wire: dict[str, Any] = {
        "type": f"orq:{kind}",
        "id": item_id,
        "call_id": item.call_id,
        "name": item.name,
        "arguments": item.arguments,
        "status": status,
    }
    if result is not None:
        wire["result"] = result
    if error is not None:
        wire["error"] = dict(error)
    return wire
