"""Limits: requests per second and concurrent requests per API key, concurrent calls per
tool kind, the sandbox's queue and the MCP pool, each answered `429` with `Retry-After`."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import ValidationError

from sidecar.limits import RequestLimits
from sidecar.settings import Settings
from tests.api.support import assert_error, make_settings, open_client
from tests.support.secrets import assert_no_secret
from tests.support.upstream import RecordingUpstream, serve_recording_upstream

pytestmark = pytest.mark.anyio

KEYS = ("limits-key-one-7d1c", "limits-key-two-95ae")
SECRET = "limits-secret-0f4b2e"
DATE = {"tool": {"type": "orq:current_date"}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with serve_recording_upstream() as running:
        yield running


def _as(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _slow(upstream: RecordingUpstream, seconds: float = 30) -> dict[str, Any]:
    tool = {
        "type": "http",
        "key": "slow",
        "http": {"blueprint": {"url": f"{upstream.base_url}/slow?seconds={seconds}"}},
    }
    return {"tool": tool, "variables": {"TOKEN": {"secret": True, "value": SECRET}}}


def _retry_after(response: httpx.Response) -> float:
    value = float(response.headers["retry-after"])
    assert value >= 1
    return value


async def _while_one_runs(
    client: httpx.AsyncClient,
    first: dict[str, Any],
    upstream: RecordingUpstream,
    then: list[tuple[dict[str, Any], dict[str, str]]],
    headers: dict[str, str] | None = None,
) -> list[httpx.Response]:
    """Send `first` (a slow call), and each of `then` while it runs; their answers."""
    upstream.slow_events.clear()
    answers: list[httpx.Response] = []
    async with anyio.create_task_group() as group:

        async def slow_one() -> None:
            await client.post("/v1/tools/execute", json=first, headers=headers or {})

        group.start_soon(slow_one)
        with anyio.fail_after(10):
            while "started" not in upstream.slow_events:
                await anyio.sleep(0.01)
        for body, sent_headers in then:
            answers.append(await client.post("/v1/tools/execute", json=body, headers=sent_headers))
        group.cancel_scope.cancel()
    return answers


async def test_requests_per_second_are_limited_per_api_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_keys=KEYS, rate_limit_per_second=2, rate_limit_burst=2)
    async with open_client(settings) as client:
        answers = [
            await client.post("/v1/tools/execute", json=DATE, headers=_as(KEYS[0]))
            for _ in range(3)
        ]
        other = await client.post("/v1/tools/execute", json=DATE, headers=_as(KEYS[1]))
        health = await client.get("/readyz")
        limited = answers[2]
        wait = _retry_after(limited)
        await anyio.sleep(wait)
        again = await client.post("/v1/tools/execute", json=DATE, headers=_as(KEYS[0]))
    assert [answer.status_code for answer in answers[:2]] == [200, 200]
    error = assert_error(limited, 429, code="rate_limited")
    assert error["type"] == "rate_limit_error"
    assert "2 requests per second" in error["message"]
    assert wait == math.ceil(wait)  # whole seconds, as the header's syntax wants
    assert other.status_code == 200  # a bucket per key
    assert health.status_code == 200  # the probes are never limited
    assert again.status_code == 200
    for key in KEYS:
        assert_no_secret(limited.text, key)


async def test_concurrent_requests_are_limited_per_api_key(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    settings = make_settings(tmp_path, api_keys=KEYS, max_concurrent_per_key=1)
    async with open_client(settings) as client:
        same, other = await _while_one_runs(
            client,
            _slow(upstream),
            upstream,
            [(DATE, _as(KEYS[0])), (DATE, _as(KEYS[1]))],
            headers=_as(KEYS[0]),
        )
        after = await client.post("/v1/tools/execute", json=DATE, headers=_as(KEYS[0]))
    error = assert_error(same, 429, code="too_many_concurrent_requests")
    assert "1 request" in error["message"]
    assert _retry_after(same) == 1
    assert other.status_code == 200
    assert after.status_code == 200  # the slot was given back when the first one ended
    for key in KEYS:
        assert_no_secret(same.text, key)


async def test_concurrent_calls_are_limited_per_tool_kind(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    settings = make_settings(tmp_path, tool_concurrency="http=1")
    async with open_client(settings) as client:
        busy, date = await _while_one_runs(
            client, _slow(upstream), upstream, [(_slow(upstream, 0), {}), (DATE, {})]
        )
        upstream.slow_events.clear()
        async with anyio.create_task_group() as group:
            batch_answer: list[httpx.Response] = []

            async def batch() -> None:
                calls = [_slow(upstream, 0.5) | {"call_id": f"c{i}"} for i in range(2)]
                shared = {"TOKEN": {"secret": True, "value": SECRET}}
                body = {"calls": [{"tool": c["tool"], "call_id": c["call_id"]} for c in calls]}
                batch_answer.append(
                    await client.post("/v1/tools/execute/batch", json={**body, "variables": shared})
                )

            group.start_soon(batch)
    error = assert_error(busy, 429, code="tool_busy")
    assert "1 http call" in error["message"]
    assert _retry_after(busy) == 1
    assert date.status_code == 200  # another kind is not held up
    outcomes = batch_answer[0].json()["data"]
    assert sorted(outcome["status"] for outcome in outcomes) == ["completed", "failed"]
    failed = next(outcome for outcome in outcomes if outcome["status"] == "failed")
    assert failed["error"]["code"] == "tool_busy"
    for text in (busy.text, batch_answer[0].text):
        assert_no_secret(text, SECRET)


async def test_a_full_sandbox_queue_is_a_429(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, sandbox_enabled=True, sandbox_concurrency=1, sandbox_queue=0)
    sleeper = {
        "tool": {
            "type": "code",
            "key": "sleeper",
            "code_tool": {"language": "python", "code": "import time\ntime.sleep(3)\nresult = 1"},
        }
    }
    quick = {
        "tool": {
            "type": "code",
            "key": "quick",
            "code_tool": {"language": "python", "code": "result = 2"},
        }
    }
    async with open_client(settings) as client:
        answers: list[httpx.Response] = []
        async with anyio.create_task_group() as group:

            async def first() -> None:
                answers.append(await client.post("/v1/tools/execute", json=sleeper))

            group.start_soon(first)
            started = time.monotonic()
            refused = None
            while refused is None and time.monotonic() - started < 10:
                await anyio.sleep(0.05)
                answer = await client.post("/v1/tools/execute", json=quick)
                if answer.status_code == 429:
                    refused = answer
    assert refused is not None, "the second call was never refused"
    assert_error(refused, 429, code="sandbox_busy")
    assert _retry_after(refused) == 1
    assert answers[0].json()["status"] == "completed"


async def test_the_bucket_refills_at_the_rate_and_says_when_to_come_back() -> None:
    now = [100.0]
    limits = RequestLimits(per_second=0.5, burst=2, clock=lambda: now[0])
    assert limits.admit("a") is None
    assert limits.admit("a") is None
    refused = limits.admit("a")
    assert refused is not None
    assert refused.retry_after == 2  # one token every 2 s
    now[0] += 1.0
    assert limits.admit("a") is not None  # half a token: still no
    now[0] += 1.0
    assert limits.admit("a") is None
    now[0] += 100.0  # a long pause fills the bucket to its burst, not beyond
    assert [limits.admit("a") is None for _ in range(3)] == [True, True, False]
    for _ in range(5):
        limits.release("a")


async def test_a_bad_tool_concurrency_setting_is_named() -> None:
    with pytest.raises(ValidationError, match="unknown tool kind 'htp'"):
        Settings(tool_concurrency="htp=2")
    with pytest.raises(ValidationError, match="whole number"):
        Settings(tool_concurrency="http=0")
    assert Settings(tool_concurrency=" http=3, code=1 ").tool_limits == {"http": 3, "code": 1}
