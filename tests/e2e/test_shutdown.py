"""SIGTERM drains a real `sidecar serve`: `/readyz` fails and new work is refused at once,
work in flight finishes within `SIDECAR_SHUTDOWN_GRACE`, what outlives it answers
`shutting_down` (a stream with `response.failed`), and the process exits 0."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.support.fake_providers import FakeProvider, Slow, Text
from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import RunningSidecar, run_sidecar
from tests.support.upstream import RecordingUpstream

SECRET = "drain-secret-5b7e0c"


def _slow_call(upstream: RecordingUpstream, seconds: float) -> dict[str, Any]:
    tool = {
        "type": "http",
        "key": "slow",
        "http": {"blueprint": {"url": f"{upstream.base_url}/slow?seconds={seconds}"}},
    }
    variables = {"TOKEN": {"secret": True, "value": SECRET}}
    return {"tool": tool, "variables": variables}


def _slow_call_in_flight(
    pool: ThreadPoolExecutor, running: RunningSidecar, upstream: RecordingUpstream, seconds: float
) -> Future[httpx.Response]:
    """Send a call of the upstream's `/slow` and return once the upstream is waiting."""
    upstream.slow_events.clear()
    in_flight = pool.submit(
        httpx.post,
        f"{running.base_url}/v1/tools/execute",
        json=_slow_call(upstream, seconds),
        timeout=30,
    )
    _until(lambda: "started" in upstream.slow_events)
    return in_flight


def _until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _readyz(running: RunningSidecar) -> httpx.Response:
    return httpx.get(f"{running.base_url}/readyz", timeout=5)


def _stopped(running: RunningSidecar) -> int:
    return running.process.wait(timeout=30)


def test_work_in_flight_finishes_and_new_work_is_refused(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    with (
        run_sidecar(tmp_path, {"SIDECAR_SHUTDOWN_GRACE": "30"}) as running,
        ThreadPoolExecutor(1) as pool,
    ):
        assert _readyz(running).status_code == 200
        in_flight = _slow_call_in_flight(pool, running, upstream, 1.5)
        running.process.send_signal(signal.SIGTERM)
        _until(lambda: _readyz(running).status_code == 503)
        assert _readyz(running).json() == {"status": "shutting_down"}
        refused = httpx.post(
            f"{running.base_url}/v1/tools/execute", json={"tool": {"type": "orq:current_date"}}
        )
        health = httpx.get(f"{running.base_url}/healthz")
        answer = in_flight.result(timeout=30)
        assert _stopped(running) == 0

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed"
    assert answer.json()["result"]["body"] == {"slow": True}
    assert upstream.slow_events == ["started"]  # it was not cut
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "shutting_down"
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["connection"] == "close"
    assert health.status_code == 200
    logs = running.logs()
    assert '"cut": 0' in logs or '"cut":0' in logs
    assert "services.closed" in logs
    for text in (answer.text, logs):
        assert_no_secret(text, SECRET)


def test_work_that_outlives_the_grace_answers_shutting_down(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    with (
        run_sidecar(tmp_path, {"SIDECAR_SHUTDOWN_GRACE": "1"}) as running,
        ThreadPoolExecutor(1) as pool,
    ):
        in_flight = _slow_call_in_flight(pool, running, upstream, 60)
        signalled = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        answer = in_flight.result(timeout=30)
        answered_after = time.monotonic() - signalled
        assert _stopped(running) == 0
        _until(lambda: "left" in upstream.slow_events)  # the upstream call was cancelled

    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "shutting_down"
    assert "send it again" in error["message"]
    assert answered_after < 20  # the grace (1 s) and the cut, not the upstream's 60 s
    logs = running.logs()
    assert '"cut": 1' in logs or '"cut":1' in logs
    for text in (answer.text, logs):
        assert_no_secret(text, SECRET)


def test_a_stream_cut_by_the_shutdown_ends_with_response_failed(
    tmp_path: Path, fake: FakeProvider
) -> None:
    providers = tmp_path / "providers.yaml"
    entry = {"name": "chat", "wire": "openai-chat", "base_url": fake.base_url}
    providers.write_text(json.dumps({"providers": [entry]}), "utf-8")
    env = {"SIDECAR_SHUTDOWN_GRACE": "1", "SIDECAR_PROVIDERS_FILE": str(providers)}
    fake.reset()
    fake.reply(Slow(Text("a long answer that never comes"), seconds=60, after=2))
    lines: list[str] = []

    def read_stream(url: str) -> int:
        body = {"model": "chat/m", "input": "take your time", "stream": True}
        with httpx.stream("POST", url, json=body, timeout=30) as response:
            lines.extend(response.iter_lines())
            return response.status_code

    with run_sidecar(tmp_path, env) as running, ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(read_stream, f"{running.base_url}/v1/responses")
        fake.wait_until(lambda: fake.holding == 1, timeout=10)
        running.process.send_signal(signal.SIGTERM)
        status = streaming.result(timeout=30)
        assert _stopped(running) == 0

    assert status == 200
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "shutting_down"
    assert [line for line in lines if line][-1] == "data: [DONE]"
    fake.wait_until(lambda: fake.holding == 0, timeout=10)  # the provider call was dropped
