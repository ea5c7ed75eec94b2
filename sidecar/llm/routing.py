"""Routing a model turn: which provider, retries with backoff, then the fallbacks.

A turn is opened when its provider gives the first event: until then a failure may be
retried (on the statuses asked for, timeouts and connection errors, with exponential
backoff, full jitter and `Retry-After` honoured, never past the run's time) and then
handed to the next fallback. Once an event came, the turn belongs to that provider:
a later failure ends it, so a stream never mixes two providers' answers.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import anyio

from sidecar.errors import BadRequest
from sidecar.llm.providers.base import (
    Finish,
    ModelEvent,
    ModelRequest,
    Provider,
    ProviderError,
    Usage,
)
from sidecar.metrics import Metrics
from sidecar.tracing import NO_TRACING, Span, SpanKind, Tracing, Value
from tools.base import Deadline

__all__ = ["OpenedTurn", "RetryPolicy", "Router", "Target", "parse_model"]

_NEVER_RETRIED_4XX = frozenset(range(400, 500)) - {408, 409, 429}
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try a model again, and on which statuses."""

    count: int = 0
    on_codes: frozenset[int] = frozenset({429, 500, 502, 503, 504})

    def allows(self, error: ProviderError) -> bool:
        """Whether `error` is worth another try."""
        if error.status is None:
            return error.retryable  # a timeout, a connection that failed
        return error.status in self.on_codes and error.status not in _NEVER_RETRIED_4XX


@dataclass(frozen=True)
class Target:
    """A model of a provider (`provider/model`), with what it asks of its own.

    `overrides` replace fields of the model request for this target only (an agent's
    fallback model with its own parameters); `retry`, when set, replaces the run's.
    """

    provider: str
    model: str
    overrides: tuple[tuple[str, Any], ...] = ()
    retry: RetryPolicy | None = None

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass
class OpenedTurn:
    """A turn whose provider answered: its first event and the rest of its stream."""

    target: Target
    first: ModelEvent
    rest: AsyncIterator[ModelEvent]

    async def events(self) -> AsyncIterator[ModelEvent]:
        """Every event of the turn, the first included."""
        yield self.first
        async for event in self.rest:
            yield event

    async def aclose(self) -> None:
        await self.rest.aclose()  # type: ignore[attr-defined]


def parse_model(text: str, *, param: str = "model") -> Target:
    """`provider/model` (the model may hold more slashes: `openrouter/meta/llama-3`)."""
    provider, _, model = text.partition("/")
    if not provider or not model:
        raise BadRequest(
            f"{param} must be 'provider/model' (for example 'openai/gpt-4.1-mini'), got {text!r}",
            param=param,
        )
    return Target(provider, model)


class Router:
    """Opens turns on the configured providers, trying again and falling back."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        jitter: Callable[[], float] = random.random,
        metrics: Metrics | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._tracing = tracing
        self._providers = dict(providers)
        self._sleep = sleep
        self._jitter = jitter

    def observe_usage(self, target: Target, usage: Usage, cost: float) -> None:
        """Count a finished turn's tokens and cost in the metrics."""
        self._metrics.observe_usage(
            target.provider, target.model, usage.input_tokens, usage.output_tokens, cost
        )

    def provider(self, target: Target) -> Provider:
        """The provider of a target (checked before a run starts)."""
        return self._providers[target.provider]

    async def open(
        self,
        targets: Sequence[Target],
        request: ModelRequest,
        retry: RetryPolicy,
        *,
        streaming: bool,
        deadline: Deadline,
        call_timeout: float | None = None,
    ) -> OpenedTurn:
        """Start the turn on the first target that answers; the last failure otherwise."""
        failure: ProviderError | None = None
        for position, target in enumerate(targets):
            try:
                return await self._open_one(
                    target, request, retry, streaming, deadline, call_timeout
                )
            except ProviderError as exc:
                failure = exc
                if position + 1 < len(targets):
                    self._metrics.observe_fallback(target.provider, target.model)
        assert failure is not None
        raise failure

    async def _open_one(
        self,
        target: Target,
        request: ModelRequest,
        retry: RetryPolicy,
        streaming: bool,
        deadline: Deadline,
        call_timeout: float | None,
    ) -> OpenedTurn:
        provider = self._providers[target.provider]
        retry = target.retry or retry
        attempt = 0
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise ProviderError("the run's time ran out", code="timeout", status=408)
            seconds = remaining if call_timeout is None else min(call_timeout, remaining)
            asked = replace(request, model=target.model, timeout=seconds, **dict(target.overrides))
            span = self._tracing.start(
                lambda: f"chat {target.model}",
                partial(_span_attributes, target, attempt + 1),
                kind=SpanKind.CLIENT,
            )
            stream = provider.stream(asked, streaming=streaming)
            try:
                first = await stream.__anext__()
            except StopAsyncIteration:
                empty = ProviderError(
                    f"provider {target.provider!r} ended the turn without any event", status=502
                )
                self._failed(target, span, empty)
                raise empty from None
            except ProviderError as exc:
                self._failed(target, span, exc)
                await stream.aclose()  # type: ignore[attr-defined]
                wait = self._backoff(attempt, exc.retry_after)
                if attempt >= retry.count or not retry.allows(exc) or wait >= deadline.remaining():
                    raise
                attempt += 1
                await self._sleep(wait)
                continue
            except BaseException as exc:  # cancelled: the span still ends
                span.fail(type(exc).__name__)
                span.end()
                raise
            self._metrics.observe_model_call(target.provider, target.model, "completed")
            if span.sampled:  # a span that records ends with the stream
                return OpenedTurn(target, first, _traced(stream, first, span))
            return OpenedTurn(target, first, stream)

    def _failed(self, target: Target, span: Span, error: ProviderError) -> None:
        self._metrics.observe_model_call(target.provider, target.model, error.code)
        span.fail(error.code, error.message)
        span.end()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential with full jitter; never sooner than the provider asked."""
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt)
        wait = ceiling * self._jitter()
        return max(wait, retry_after) if retry_after is not None else wait


async def _traced(
    rest: AsyncIterator[ModelEvent], first: ModelEvent, span: Span
) -> AsyncIterator[ModelEvent]:
    """The rest of a turn, ending its span with the usage and the finish reason."""
    try:
        _note(span, first)
        async for event in rest:
            _note(span, event)
            yield event
    except ProviderError as exc:
        span.fail(exc.code, exc.message)
        raise
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
        span.end()


def _span_attributes(target: Target, attempt: int) -> dict[str, Value]:
    """A provider attempt's span attributes (GenAI's semantic conventions)."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": target.provider,
        "gen_ai.request.model": target.model,
        "sidecar.attempt": attempt,
    }


def _note(span: Span, event: ModelEvent) -> None:
    usage = event.usage if isinstance(event, Finish) else event
    if isinstance(event, Finish):
        span.set("gen_ai.response.finish_reasons", [event.reason])
    if isinstance(usage, Usage):
        span.set("gen_ai.usage.input_tokens", usage.input_tokens)
        span.set("gen_ai.usage.output_tokens", usage.output_tokens)
