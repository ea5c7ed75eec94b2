"""Limits per API key: requests per second (a token bucket) and requests at once.

    RequestLimits.admit(caller)   None, or the `TooManyRequests` to answer (429 with
                                  `Retry-After`); an admitted request is `release`d
                                  when it ends

A caller is an API key (by its place in `SIDECAR_API_KEYS`, never the key itself), or
everyone at once when no keys are configured. The other limits answer the same way:
calls of a tool kind at once (the executor, `tool_busy`), the sandbox's queue
(`sandbox_busy`) and the MCP pool's size (`mcp_pool_full`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from sidecar.errors import TooManyRequests

__all__ = ["RequestLimits"]


@dataclass
class _Caller:
    tokens: float
    at: float
    running: int = 0


class RequestLimits:
    """The request limits of every caller; off (and free) when both are 0."""

    def __init__(
        self,
        *,
        per_second: float = 0.0,
        burst: int = 0,
        concurrent: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = per_second
        self._burst = burst or max(1, math.ceil(per_second))
        self._concurrent = concurrent
        self._clock = clock
        self._callers: dict[str, _Caller] = {}
        self.active = per_second > 0 or concurrent > 0

    def admit(self, caller: str) -> TooManyRequests | None:
        """Take one request of `caller` in, or say why not and when to try again."""
        state = self._callers.get(caller)
        now = self._clock()
        if state is None:
            state = self._callers[caller] = _Caller(float(self._burst), now)
        if self._concurrent and state.running >= self._concurrent:
            plural = "" if self._concurrent == 1 else "s"
            return TooManyRequests(
                f"at most {self._concurrent} request{plural} at once per API key; "
                "one must finish first",
                code="too_many_concurrent_requests",
            )
        if self._rate:
            state.tokens = min(self._burst, state.tokens + (now - state.at) * self._rate)
            state.at = now
            if state.tokens < 1:
                wait = (1 - state.tokens) / self._rate
                return TooManyRequests(
                    f"at most {self._rate:g} requests per second per API key "
                    f"(bursts of {self._burst})",
                    retry_after=math.ceil(wait),
                )
            state.tokens -= 1
        state.running += 1
        return None

    def release(self, caller: str) -> None:
        """One admitted request of `caller` ended."""
        self._callers[caller].running -= 1
