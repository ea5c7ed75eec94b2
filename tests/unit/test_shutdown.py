"""The shutdown drain on its own: who is waited for, who is cut, and when."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from sidecar.shutdown import Drain

pytestmark = pytest.mark.anyio


async def _work(drain: Drain, seconds: float, ended: list[str], *, listening: bool = False) -> None:
    """A request's work as the edge runs it: noted, answered when cut."""
    task = drain.enter(listening=listening)
    try:
        try:
            await anyio.sleep(seconds)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05)  # a clean-up after the cut still runs
                ended.append("cleaned")
    except asyncio.CancelledError:
        if not drain.was_cut(task):
            raise
        ended.append("cut")
    else:
        ended.append("finished")
    finally:
        drain.leave(task)


async def test_work_that_finishes_in_the_grace_is_waited_for_and_listening_is_not() -> None:
    drain, ended, listened = Drain(), list[str](), list[str]()
    async with anyio.create_task_group() as group:
        group.start_soon(_work, drain, 0.2, ended)
        group.start_soon(lambda: _work(drain, 60, listened, listening=True))
        await anyio.sleep(0.05)
        drain.begin()
        assert drain.draining
        assert not drain.stopped
        with anyio.fail_after(10):
            assert await drain.settle(30) == 0
    assert ended == ["cleaned", "finished"]
    assert listened == ["cleaned", "cut"]  # a listening stream does not hold the shutdown
    assert drain.in_flight == 0


async def test_work_beyond_the_grace_is_cut_and_later_work_never_starts() -> None:
    drain, ended = Drain(), list[str]()
    async with anyio.create_task_group() as group:
        group.start_soon(_work, drain, 60, ended)
        await anyio.sleep(0.05)
        drain.begin()
        with anyio.fail_after(10):
            assert await drain.settle(0.2) == 1
        assert drain.stopped
        await _work(drain, 60, ended)  # tracked after the cut: cancelled at once
    assert ended == ["cleaned", "cut", "cleaned", "cut"]


async def test_a_second_signal_cuts_without_waiting_for_the_grace() -> None:
    drain, ended, hurry = Drain(), list[str](), [False]
    async with anyio.create_task_group() as group:
        group.start_soon(_work, drain, 60, ended)
        await anyio.sleep(0.05)
        drain.begin()

        async def second_signal() -> None:
            await anyio.sleep(0.2)
            hurry[0] = True

        group.start_soon(second_signal)
        with anyio.fail_after(10):
            assert await drain.settle(3600, hurry=lambda: hurry[0]) == 1
    assert ended == ["cleaned", "cut"]


async def test_a_cancellation_that_is_not_the_shutdowns_goes_on() -> None:
    drain, ended = Drain(), list[str]()
    with anyio.CancelScope() as scope:
        scope.cancel()  # the client went away, say
        await _work(drain, 60, ended)
    assert scope.cancelled_caught
    assert ended == ["cleaned"]  # neither "cut" nor "finished": the cancellation went on
    assert drain.in_flight == 0
