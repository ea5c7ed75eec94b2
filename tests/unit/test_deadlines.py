"""The deadline watchdog: one timer for every call in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import anyio
import pytest

from sidecar.deadlines import DeadlineWatch
from tools.base import Deadline

pytestmark = pytest.mark.anyio


@pytest.fixture
async def watch() -> AsyncIterator[DeadlineWatch]:
    deadlines = DeadlineWatch(resolution=0.005)
    yield deadlines
    deadlines.close()


async def test_a_block_past_its_deadline_raises_timeout(watch: DeadlineWatch) -> None:
    never = anyio.Event()
    with pytest.raises(TimeoutError), watch.guard(Deadline.after(0.02)) as guard:
        await never.wait()
    assert guard.expired
    await anyio.sleep(0.02)  # the task is usable afterwards: no cancellation is pending


async def test_a_block_that_ends_in_time_is_left_alone(watch: DeadlineWatch) -> None:
    with watch.guard(Deadline.after(5)) as guard:
        await anyio.sleep(0)
    assert not guard.expired
    assert not watch._inflight
    await anyio.sleep(0.02)
    assert watch._ticker is None, "the timer stops when no call is in flight"


async def test_a_tool_that_swallows_the_cancellation_keeps_its_result(
    watch: DeadlineWatch,
) -> None:
    with watch.guard(Deadline.after(0.01)) as guard, contextlib.suppress(asyncio.CancelledError):
        await anyio.Event().wait()
    assert guard.expired
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await anyio.sleep(0.01)


async def test_an_outside_cancellation_is_not_a_timeout(watch: DeadlineWatch) -> None:
    with anyio.move_on_after(0.02) as scope, watch.guard(Deadline.after(5)):
        await anyio.Event().wait()
    assert scope.cancelled_caught


async def test_many_calls_share_the_watchdog(watch: DeadlineWatch) -> None:
    outcomes: list[str] = []

    async def call(seconds: float) -> None:
        try:
            with watch.guard(Deadline.after(seconds)):
                await anyio.Event().wait()
        except TimeoutError:
            outcomes.append("timeout")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for index in range(50):
                group.start_soon(call, 0.01 + index * 0.001)
    assert outcomes == ["timeout"] * 50
    assert not watch._inflight
