"""Call deadlines: one ticking timer for every call in flight instead of a timer per call.

A timer per call (`asyncio.timeout`) costs a timer handle armed and disarmed on
the event loop for each call, about a tenth of a whole request under load. Tools
bound their own waits; this is the safety net for one that does not, so a
resolution of a few tens of milliseconds is plenty. The timer ticks only while
some call is in flight, and it is a loop callback, not a task: nothing to start
or to wrap the service's errors in a task group.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from tools.base import Deadline

__all__ = ["DeadlineGuard", "DeadlineWatch"]


class DeadlineGuard:
    """Watches the current task until the block ends; raises `TimeoutError` if it expired."""

    __slots__ = ("_at", "_task", "_watch", "expired")

    def __init__(self, watch: DeadlineWatch, deadline: Deadline) -> None:
        self._watch = watch
        self._at = deadline.at
        self._task: asyncio.Task[object] | None = None
        self.expired = False

    def __enter__(self) -> DeadlineGuard:
        self._task = asyncio.current_task()
        self._watch._watch(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Leaving the set happens before any await, so the watchdog cannot cancel
        # the task once the guarded block is over.
        self._watch._inflight.discard(self)
        if not self.expired:
            return
        if self._task is not None:
            self._task.uncancel()
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            raise TimeoutError from None

    def _expire(self, now: float) -> None:
        if not self.expired and self._at <= now and self._task is not None:
            self.expired = True
            self._task.cancel()


class DeadlineWatch:
    """Cancels guarded calls that outlive their deadline."""

    def __init__(self, resolution: float = 0.02) -> None:
        self._resolution = resolution
        self._inflight: set[DeadlineGuard] = set()
        self._ticker: asyncio.TimerHandle | None = None

    def guard(self, deadline: Deadline) -> DeadlineGuard:
        """A context manager that watches the current task against `deadline`."""
        return DeadlineGuard(self, deadline)

    def close(self) -> None:
        """Stop ticking (calls still in flight are no longer watched)."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def _watch(self, guard: DeadlineGuard) -> None:
        self._inflight.add(guard)
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().call_later(self._resolution, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        now = time.monotonic()
        for guard in list(self._inflight):
            guard._expire(now)
        if self._inflight:
            self._ticker = asyncio.get_running_loop().call_later(self._resolution, self._tick)
