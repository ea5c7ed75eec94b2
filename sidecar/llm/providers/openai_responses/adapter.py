"""The OpenAI Responses provider: it posts the body `to_wire` builds to `/responses`, for
a whole answer or a stream, and reads what comes back into model events through
`from_wire`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sidecar.llm.providers.base import ModelEvent, ModelRequest
from sidecar.llm.providers.http import Endpoint, Transport, turn_events
from sidecar.llm.providers.openai_responses import from_wire, to_wire

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
        name = self._endpoint.name
        events = turn_events(
            self._client,
            self._endpoint,
            _PATH,
            body,
            seconds=request.timeout,
            streaming=streaming,
            whole=lambda answer: from_wire.response_events(answer, name),
            reader=from_wire.EventReader(name),
        )
        async for event in events:
            yield event
