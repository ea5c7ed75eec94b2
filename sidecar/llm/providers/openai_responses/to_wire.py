"""OpenAI Responses, to the wire: the request body made of a `ModelRequest` (the input
items, tools, tool choice, JSON-schema text format, sampling settings, reasoning effort,
and the include that asks for encrypted reasoning), and the name the provider's
reasoning carries.
"""

from __future__ import annotations

from typing import Any

from sidecar.llm.items import (
    FunctionCallItem,
    FunctionOutputItem,
    ImagePart,
    Item,
    MessageItem,
    ReasoningItem,
    TextPart,
)
from sidecar.llm.providers.base import ModelRequest, NamedTool, ProviderError
from tools.base import FunctionDefinition

__all__ = ["PROVIDER", "body"]

PROVIDER = "openai"


def body(request: ModelRequest, streaming: bool) -> dict[str, Any]:
    if request.stop:
        raise ProviderError(
            "stop sequences are not supported by the Responses wire", code="unsupported_request"
        )
    body: dict[str, Any] = {"model": request.model, "input": _input(request.items), "store": False}
    if request.instructions:
        body["instructions"] = request.instructions
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.tool_choice is not None:
        body["tool_choice"] = (
            {"type": "function", "name": request.tool_choice.name}
            if isinstance(request.tool_choice, NamedTool)
            else request.tool_choice
        )
    if request.json_schema is not None:
        name, schema, strict = request.json_schema
        body["text"] = {
            "format": {"type": "json_schema", "name": name, "schema": schema, "strict": strict}
        }
    optional = {
        "max_output_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    if request.reasoning_effort is not None:
        body["reasoning"] = {"effort": request.reasoning_effort, "summary": "auto"}
    if request.reasoning_effort is not None or any(map(_is_own_reasoning, request.items)):
        body["include"] = ["reasoning.encrypted_content"]
    if streaming:
        body["stream"] = True
    return body


def _tool(tool: FunctionDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": bool(tool.strict),
    }


def _is_own_reasoning(item: Item) -> bool:
    return isinstance(item, ReasoningItem) and item.provider == PROVIDER and bool(item.opaque)


def _input(items: tuple[Item, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        match item:
            case MessageItem(role, parts):
                content = _content(role, parts)
                if content:
                    out.append({"type": "message", "role": role, "content": content})
            case FunctionCallItem(call_id, name, arguments):
                out.append(
                    {
                        "type": "function_call",
                        "call_id": call_id,
                        "name": name,
                        "arguments": arguments,
                    }
                )
            case FunctionOutputItem(call_id, output):
                out.append({"type": "function_call_output", "call_id": call_id, "output": output})
            case ReasoningItem(summary, _, opaque) if _is_own_reasoning(item):
                # No id: with `store: false` an id would be looked up, and not be found.
                summaries = [{"type": "summary_text", "text": summary}] if summary else []
                out.append({"type": "reasoning", "encrypted_content": opaque, "summary": summaries})
    return out


def _content(role: str, parts: tuple[TextPart | ImagePart, ...]) -> list[dict[str, Any]]:
    if role == "assistant":
        texts = [part.text for part in parts if isinstance(part, TextPart) and part.text]
        return [{"type": "output_text", "text": text} for text in texts]
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            content.append({"type": "input_text", "text": part.text})
        else:
            content.append(
                {"type": "input_image", "image_url": part.url, "detail": part.detail or "auto"}
            )
    return content
