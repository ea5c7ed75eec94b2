"""Timing sequential calls for the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

__all__ = ["timed"]


async def timed(
    call: Callable[[], Awaitable[object]], calls: int, *, warm_up: int = 1
) -> list[float]:
    """Milliseconds of each of `calls` sequential calls, after `warm_up` untimed ones."""
    for _ in range(warm_up):
        await call()
    spent: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        spent.append((time.perf_counter() - started) * 1e3)
    return spent
