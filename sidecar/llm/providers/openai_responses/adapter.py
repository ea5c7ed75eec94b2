"""The OpenAI Responses provider: it posts the body `to_wire` builds to `/responses`, for
a whole answer or a stream, and reads what comes back into model events through
`from_wire`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import cast

from sidecar.llm.providers.base import ModelEvent, ModelRequest
from sidecar.llm.providers.http import Endpoint, Transport, post_json, post_stream
from sidecar.llm.providers.openai_responses import from_wire, to_wire
from sidecar.llm.providers.sse import ServerEvent

__all__ = ["OpenAIResponses"]

_PATH = "/responses"


class OpenAIResponses:
    """A Responses API provider."""

    reasoning_provider = to_wire.PROVIDER  # what its `ReasoningItem`s carry as `provider`

    def __init__(self, client: Transport, endpoint: Endpoint) -> None:
        self._client = client
        self._endpoint = endpoint

    async def stream(
        self, request: ModelRequest, *, streaming: bool = True
    ) -> AsyncIterator[ModelEvent]:
        body = to_wire.body(request, streaming)
        if not streaming:
            answer = await post_json(
                self._client, self._endpoint, _PATH, body, seconds=request.timeout
            )
            for whole in from_wire.response_events(answer, self._endpoint.name):
                yield whole
            return
        reader = from_wire.EventReader(self._endpoint.name)
        # `post_stream` is an async generator: closed here, the answer is closed at once.
        events = post_stream(self._client, self._endpoint, _PATH, body, seconds=request.timeout)
        async with aclosing(cast(AsyncGenerator[ServerEvent, None], events)) as server_events:
            async for server_event in server_events:
                for model_event in reader.read(server_event.event, server_event.data):
                    yield model_event
                if reader.done:
                    break
        yield reader.finish()
