"""The Anthropic Messages provider: it posts the body `to_wire` builds to `/v1/messages`
(with an `anthropic-version` header unless the endpoint sets one), for a whole answer or
a stream, and reads what comes back into model events through `from_wire`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from sidecar.llm.providers.anthropic import from_wire, to_wire
from sidecar.llm.providers.base import ModelEvent, ModelRequest
from sidecar.llm.providers.http import Endpoint, Transport, turn_events

__all__ = ["AnthropicMessages"]

_PATH = "/v1/messages"
_VERSION = "2023-06-01"


class AnthropicMessages:
    """A Messages API provider."""

    reasoning_provider = to_wire.PROVIDER  # what its `ReasoningItem`s carry as `provider`

    def __init__(
        self, client: Transport, endpoint: Endpoint, *, max_tokens_default: int = 4096
    ) -> None:
        self._client = client
        self._endpoint = _with_version(endpoint)
        self._max_tokens_default = max_tokens_default

    async def stream(
        self, request: ModelRequest, *, streaming: bool = True
    ) -> AsyncIterator[ModelEvent]:
        body = to_wire.body(request, self._max_tokens_default, streaming)
        answer_tool = request.json_schema[0] if request.json_schema is not None else None
        name = self._endpoint.name
        events = turn_events(
            self._client,
            self._endpoint,
            _PATH,
            body,
            seconds=request.timeout,
            streaming=streaming,
            whole=lambda answer: from_wire.message_events(answer, name, answer_tool),
            reader=from_wire.EventReader(name, answer_tool),
        )
        async for event in events:
            yield event


def _with_version(endpoint: Endpoint) -> Endpoint:
    if any(name.lower() == "anthropic-version" for name in endpoint.headers):
        return endpoint
    return replace(endpoint, headers={**endpoint.headers, "anthropic-version": _VERSION})
