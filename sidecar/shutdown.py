"""Graceful shutdown: refuse new work, let the work in flight finish, then end the rest.

    Drain.begin()        the first SIGTERM: `/readyz` fails, new work is refused
                         (`503 shutting_down`, `connection: close`)
    Drain.enter/leave    every request that is work is noted (its task); listening
                         streams (`GET /mcp`) too, but nobody waits for them
    Drain.settle(grace)  waits until no work is in flight or `grace` seconds passed, then
                         cuts what is left: each cut request answers `shutting_down`
                         (a streamed response ends with `response.failed`)

A request is cut by cancelling its task once (each request has its own on the server's
loop), as `sidecar.deadlines` does for a call past its deadline; `Drain.was_cut` tells
the request so, and takes the cancellation back so that it can answer. Noting a task
costs a set insertion; a cancel scope per request cost 7-8 us of the 22 us the app
spends on a `current_date` call. The one cancellation can land inside a shielded
clean-up (a cancelled run being stored): that clean-up is then cut short, at the end
of the grace only. The server closes its listener and the service its resources (MCP
pool, sandbox, stores) only after `settle`, so every request it accepted gets an answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio

__all__ = ["Drain"]

_POLL_SECONDS = 0.05
_CUT_SECONDS = 5.0  # for cut work to write its error and leave
_CUT = "the service is shutting down"

Task = asyncio.Task[object]


class Drain:
    """The service's shutdown state; one per process, shared by the doors and the core."""

    def __init__(self) -> None:
        self.draining = False  # new work is refused
        self.stopped = False  # the grace ran out: what is still running is being cut
        self._work: set[Task] = set()
        self._listening: set[Task] = set()
        self._cut: set[Task] = set()
        self._left: anyio.Event | None = None  # set when work leaves, while settling

    @property
    def in_flight(self) -> int:
        """Requests being worked on (listening streams left out)."""
        return len(self._work)

    def begin(self) -> None:
        """Refuse new work from now on."""
        self.draining = True

    def enter(self, *, listening: bool = False) -> Task:
        """Note the current task as one request's work; hand it to `leave` when it ends."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a request's work runs in a task")
        (self._listening if listening else self._work).add(task)
        if self.stopped:
            self._cut_task(task)
        return task

    def leave(self, task: Task) -> None:
        """The request's work is over."""
        self._work.discard(task)
        self._listening.discard(task)
        self._cut.discard(task)
        if self._left is not None:
            self._left.set()

    def was_cut(self, task: Task) -> bool:
        """Whether the cancellation `task` sees is the shutdown's; if so it is taken back,
        so that the request can answer (its error says it was cut)."""
        if task not in self._cut:
            return False
        self._cut.discard(task)
        task.uncancel()
        return True

    async def settle(self, grace: float, *, hurry: Callable[[], bool] = lambda: False) -> int:
        """Wait for the work in flight (at most `grace` seconds, less when `hurry()` says
        so), then cut what is left and give it a moment to answer; the number cut."""
        with anyio.move_on_after(grace):
            while self._work and not hurry():
                await self._some_work_left(_POLL_SECONDS)
        cut = len(self._work)
        self.stopped = True
        for task in (*self._work, *self._listening):
            self._cut_task(task)
        with anyio.move_on_after(_CUT_SECONDS):
            while self._work:
                await self._some_work_left(_POLL_SECONDS)
        return cut

    def _cut_task(self, task: Task) -> None:
        if task not in self._cut:
            self._cut.add(task)
            task.cancel(_CUT)

    async def _some_work_left(self, seconds: float) -> None:
        """Until a request's work ends, or `seconds` (a second signal is read by polling)."""
        self._left = anyio.Event()
        with anyio.move_on_after(seconds):
            await self._left.wait()
