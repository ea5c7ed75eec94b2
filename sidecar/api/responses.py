"""The Responses door: `/v3/router/responses` (orq) and `/v1/responses` (the `openai` SDK).

`POST` creates a response (JSON, or server-sent events with `stream: true`); `GET`
reads a stored one; `DELETE` forgets it. A streamed response's status and headers are
sent once its first model turn began: a model that cannot be reached is a real error
status (429 with `Retry-After`, 502, 504), not a 200 stream with an error inside.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sidecar.api.wire import error_response, json_response, read_json
from sidecar.errors import NotFound, SidecarError
from sidecar.llm.responder import ModelCallFailed, Responder, ResponseStream
from sidecar.llm.responses import parse_request
from sidecar.services import services_from

__all__ = ["create_response", "delete_response", "get_response"]

T = TypeVar("T")

_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def _responder(request: Request) -> Responder:
    responder = services_from(request).responder
    if responder is None:
        raise SidecarError("the model core is not running here", code="model_core_unavailable")
    return responder


async def create_response(request: Request) -> Response:
    """Create a response."""
    body = parse_request(await read_json(request))
    responder = _responder(request)
    try:
        if body.stream:
            stream = await _unless_gone(request, lambda: responder.open_stream(body))
            return Response(status_code=499) if stream is None else _EventStream(stream)
        answer = await _unless_gone(request, lambda: responder.respond(body))
        return Response(status_code=499) if answer is None else json_response(answer)
    except ModelCallFailed as exc:
        retry = exc.retry_after
        headers = {"retry-after": str(max(1, math.ceil(retry)))} if retry is not None else None
        return error_response(exc, headers)


async def _unless_gone(request: Request, work: Callable[[], Awaitable[T]]) -> T | None:
    """`work()`, cancelled (None) when the client goes away first: the provider call and
    the tools stop with it."""
    done: list[T] = []
    failed: list[SidecarError] = []
    async with anyio.create_task_group() as group:

        async def watch_disconnect() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(watch_disconnect)
        try:
            done.append(await work())
        except SidecarError as exc:  # raised as it is, not inside the group's ExceptionGroup
            failed.append(exc)
        group.cancel_scope.cancel()
    if failed:
        raise failed[0]
    return done[0] if done else None


async def get_response(request: Request) -> Response:
    """A stored response."""
    response_id = request.path_params["response_id"]
    found = await _responder(request).get(response_id)
    if found is None:
        raise NotFound(f"no stored response {response_id!r}", param="response_id")
    return json_response(found)


async def delete_response(request: Request) -> Response:
    """Forget a stored response."""
    response_id = request.path_params["response_id"]
    if not await _responder(request).delete(response_id):
        raise NotFound(f"no stored response {response_id!r}", param="response_id")
    return json_response({"id": response_id, "object": "response", "deleted": True})


class _EventStream(Response):
    """Writes a run's events as they come; the run is cancelled if the client goes away."""

    def __init__(self, stream: ResponseStream) -> None:
        super().__init__(status_code=200)
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _STREAM_HEADERS})

        async def write(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        try:
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()  # stops the provider stream and the tools

                group.start_soon(watch_disconnect)
                with contextlib.suppress(OSError):  # the client went away while written to
                    await self._stream.run(write)
                group.cancel_scope.cancel()
        finally:  # a stream the shutdown cut ends properly too
            with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
