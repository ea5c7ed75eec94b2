"""The Anthropic Messages provider: it posts the body `to_wire` builds to `/v1/messages`
(with an `anthropic-version` header unless the endpoint sets one), for a whole answer or
a stream, and reads what comes back into model events through `from_wire`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import replace
from typing import cast

from sidecar.llm.providers.anthropic import from_wire, to_wire
from sidecar.llm.providers.base import ModelEvent, ModelRequest
from sidecar.llm.providers.http import Endpoint, Transport, post_json, post_stream
from sidecar.llm.providers.sse import ServerEvent

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
        if not streaming:
            answer = await post_json(
                self._client, self._endpoint, _PATH, body, seconds=request.timeout
            )
            for whole in from_wire.message_events(answer, self._endpoint.name, answer_tool):
                yield whole
            return
        reader = from_wire.EventReader(self._endpoint.name, answer_tool)
        # `post_stream` is an async generator: closed here, the answer is closed at once.
        events = post_stream(self._client, self._endpoint, _PATH, body, seconds=request.timeout)
        async with aclosing(cast(AsyncGenerator[ServerEvent, None], events)) as server_events:
            async for server_event in server_events:
                for model_event in reader.read(server_event.event, server_event.data):
                    yield model_event
                if reader.done:
                    break
        yield reader.finish()


def _with_version(endpoint: Endpoint) -> Endpoint:
    if any(name.lower() == "anthropic-version" for name in endpoint.headers):
        return endpoint
    return replace(endpoint, headers={**endpoint.headers, "anthropic-version": _VERSION})
