"""The sandbox pool with real processes: results, deadlines, limits, restarts, leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from sandbox import (
    HttpHandler,
    JsonValue,
    RawRun,
    SandboxBusy,
    SandboxError,
    SandboxFailure,
    SandboxLimits,
    SandboxPool,
    SandboxRun,
)
from tests.support.processes import processes

pytestmark = pytest.mark.anyio

LIMITS = SandboxLimits(cpu_seconds=20, memory_mb=256)
LOOP = "while True:\n    pass\n"
OK: dict[str, JsonValue] = {"ok": True, "status_code": 200, "headers": {}, "body": None}
# Finds the call socket in a raw child, to speak the protocol as hostile code would.
CALL_SOCKET = (
    "import os, socket, stat, struct, json\n"
    "fd = next(fd for fd in range(3, 16) if _is_socket(fd))\n"
    "call = socket.socket(fileno=fd)\n"
)
IS_SOCKET = (
    "import os, stat\n"
    "def _is_socket(fd):\n"
    "    try:\n"
    "        return stat.S_ISSOCK(os.fstat(fd).st_mode)\n"
    "    except OSError:\n"
    "        return False\n"
)


def _descendants(root: int) -> set[int]:
    table = processes()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (parent, _) in table.items() if parent in frontier}
        found |= frontier
    return found


def _zombies_of(parent: int) -> set[int]:
    return {pid for pid, (ppid, state) in processes().items() if ppid == parent and state == "Z"}


def _assert_nothing_left(zygote: int | None) -> None:
    assert not _descendants(os.getpid()), "a sandbox process outlived close()"
    assert not _zombies_of(os.getpid())
    assert zygote is not None
    assert not Path(f"/proc/{zygote}").exists()


@pytest.fixture
async def pool() -> AsyncIterator[SandboxPool]:
    async with SandboxPool(
        LIMITS, max_concurrency=8, max_queue=64, allow_raw_python_for_tests=True
    ) as pool:
        zygote = pool.zygote_pid
        yield pool
    _assert_nothing_left(zygote)


async def _run(pool: SandboxPool, source: str, http: HttpHandler) -> None:
    await pool.run(source, {}, timeout=30, http=http)


async def _works(pool: SandboxPool) -> None:
    assert await pool.run("result = n * 2", {"n": 21}, timeout=10) == SandboxRun(42, "")


async def test_a_trivial_run_returns_its_result_and_output(pool: SandboxPool) -> None:
    outcome = await pool.run(
        "print('hello', name)\nresult = {'n': n + 1}", {"name": "x", "n": 41}, timeout=10
    )
    assert outcome == SandboxRun({"n": 42}, "hello x\n")


async def test_secrets_reach_the_child_only_through_the_pipe(pool: SandboxPool) -> None:
    secret = "sk-live-" + "7f3a9c" * 5
    seen: dict[int, bytes] = {}

    async def look_while_the_child_runs(request: dict[str, JsonValue]) -> dict[str, JsonValue]:
        zygote = pool.zygote_pid
        assert zygote is not None
        for pid in (zygote, *_descendants(zygote)):
            proc = Path(f"/proc/{pid}")
            try:
                seen[pid] = (proc / "environ").read_bytes() + (proc / "cmdline").read_bytes()
            except OSError:
                continue  # a child of an earlier call, gone meanwhile
        return OK

    source = "http.get('https://api.example.test/')\nresult = len(token)"
    outcome = await pool.run(source, {"token": secret}, timeout=10, http=look_while_the_child_runs)

    assert outcome == SandboxRun(len(secret), "")
    assert len(seen) >= 2  # the zygote and the running child (and perhaps a spare)
    for text in seen.values():
        assert secret.encode() not in text
    raw = await pool.run_raw_python_for_tests(
        "import os, sys\nresult = [dict(os.environ), sys.argv]", timeout=10
    )
    assert isinstance(raw, RawRun)
    assert isinstance(raw.result, list)
    environ, argv = raw.result
    assert isinstance(environ, dict)
    assert set(environ) <= {"LC_CTYPE"}  # the zygote's clean environment, inherited
    assert secret not in str(argv)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(LOOP, id="python-loop"),
        pytest.param("result = sum(range(10**12))", id="long-c-call"),
        pytest.param("import re\nresult = re.match('(a+)+$', 'a' * 40 + 'b')", id="regex"),
    ],
)
async def test_code_that_does_not_finish_is_killed_at_the_deadline(
    pool: SandboxPool, source: str
) -> None:
    with anyio.fail_after(5):
        outcome = await pool.run(source, {}, timeout=0.5)

    assert outcome == SandboxFailure("timeout", "the code did not finish within 0.5 s")
    await _works(pool)


async def test_the_cpu_limit_ends_a_call_as_timeout() -> None:
    async with SandboxPool(SandboxLimits(cpu_seconds=1)) as pool:
        with anyio.fail_after(10):
            outcome = await pool.run(LOOP, {}, timeout=30)
        await _works(pool)

    assert outcome == SandboxFailure("timeout", "the code used more than 1 s of CPU")


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("x = 'a' * (512 * 1024 * 1024)", id="one-allocation"),
        pytest.param("chunks = []\nwhile True:\n    chunks.append('x' * 1000000)", id="growing"),
    ],
)
async def test_a_memory_bomb_ends_as_memory_limit(pool: SandboxPool, source: str) -> None:
    outcome = await pool.run(source, {}, timeout=10)

    assert outcome == SandboxFailure(
        "memory_limit", "the code used more than the memory limit of 256 MB"
    )
    await _works(pool)


async def test_an_output_flood_ends_as_output_limit(pool: SandboxPool) -> None:
    outcome = await pool.run("while True:\n    print('x' * 1000)", {}, timeout=10)

    assert isinstance(outcome, SandboxFailure)
    assert outcome.kind == "output_limit"
    await _works(pool)


async def test_a_message_over_the_cap_ends_as_output_limit_without_reading_it(
    pool: SandboxPool,
) -> None:
    source = IS_SOCKET + CALL_SOCKET + "call.sendall(struct.pack('>I', 100_000_000))\n" + LOOP
    outcome = await pool.run_raw_python_for_tests(source, timeout=10)

    assert outcome == SandboxFailure("output_limit", "the code's output exceeds 4194304 bytes")
    await _works(pool)


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        pytest.param("struct.pack('>I', 5) + b'nope!'", "malformed", id="not-json"),
        pytest.param(
            "(lambda b: struct.pack('>I', len(b)) + b)(b'[' * 5000 + b']' * 5000)",
            "malformed",
            id="too-deep",
        ),
        pytest.param(
            "(lambda b: struct.pack('>I', len(b)) + b)(json.dumps("
            "{'type': 'error', 'kind': 'timeout', 'message': 'x'}).encode())",
            "unexpected",
            id="claims-timeout",
        ),
        pytest.param(
            "(lambda b: struct.pack('>I', len(b)) + b)(json.dumps({'type': 'pickle'}).encode())",
            "unexpected",
            id="unknown-type",
        ),
    ],
)
async def test_a_child_breaking_the_protocol_is_crashed(
    pool: SandboxPool, frame: str, why: str
) -> None:
    source = IS_SOCKET + CALL_SOCKET + f"call.sendall({frame})\n" + LOOP
    outcome = await pool.run_raw_python_for_tests(source, timeout=10)

    assert isinstance(outcome, SandboxFailure)
    assert outcome.kind == "crashed"
    assert why in outcome.message
    await _works(pool)


async def test_a_child_that_hangs_up_and_goes_on_is_killed_at_the_deadline(
    pool: SandboxPool,
) -> None:
    source = IS_SOCKET + CALL_SOCKET + "call.close()\n" + LOOP
    with anyio.fail_after(5):
        outcome = await pool.run_raw_python_for_tests(source, timeout=0.5)

    assert outcome == SandboxFailure("timeout", "the code did not finish within 0.5 s")
    await _works(pool)


async def test_a_result_that_is_not_json_is_a_runtime_error(pool: SandboxPool) -> None:
    outcome = await pool.run("result = {1, 2}", {}, timeout=10)

    assert isinstance(outcome, SandboxFailure)
    assert outcome.kind == "runtime_error"
    assert outcome.message.startswith("invalid result: result must be plain JSON")


async def test_a_child_that_exits_without_answering_is_crashed(pool: SandboxPool) -> None:
    outcome = await pool.run_raw_python_for_tests("import os\nos._exit(3)", timeout=10)

    assert outcome == SandboxFailure("crashed", "the sandboxed process exited with code 3")
    await _works(pool)


async def test_raw_python_is_refused_unless_the_pool_is_built_for_tests() -> None:
    async with SandboxPool() as pool:
        with pytest.raises(SandboxError, match="only for tests"):
            await pool.run_raw_python_for_tests("result = 1", timeout=10)


async def test_a_killed_zygote_is_replaced_on_the_next_call(pool: SandboxPool) -> None:
    old = pool.zygote_pid
    assert old is not None
    os.kill(old, signal.SIGKILL)

    await _works(pool)

    assert pool.zygote_pid not in (None, old)
    assert all(pool.layers.values())


async def test_calls_in_flight_when_the_zygote_dies_end_as_crashed(pool: SandboxPool) -> None:
    async def kill_the_zygote(request: dict[str, JsonValue]) -> dict[str, JsonValue]:
        zygote = pool.zygote_pid
        assert zygote is not None
        pidfd = os.pidfd_open(zygote)
        try:
            os.kill(zygote, signal.SIGKILL)
            await anyio.wait_readable(pidfd)  # it has exited: its children got SIGKILL
        finally:
            os.close(pidfd)
        return OK

    outcome = await pool.run("http.get('https://x.test/')", {}, timeout=10, http=kill_the_zygote)

    assert isinstance(outcome, SandboxFailure)
    assert outcome.kind == "crashed"
    await _works(pool)


async def test_fifty_infinite_loops_time_out_while_a_trivial_call_completes() -> None:
    outcomes: dict[str, SandboxRun | SandboxFailure] = {}

    async def call(busy: SandboxPool, name: str, source: str, timeout: float) -> None:
        outcomes[name] = await busy.run(source, {}, timeout=timeout)

    async with SandboxPool(LIMITS, max_concurrency=8, max_queue=64) as busy:
        zygote = busy.zygote_pid
        with anyio.fail_after(40):  # 7 rounds of 8 one-second calls, with room to spare
            async with anyio.create_task_group() as group:
                for number in range(50):
                    group.start_soon(call, busy, f"loop-{number}", LOOP, 1)
                group.start_soon(call, busy, "trivial", "result = 'done'", 30)
        await _works(busy)
    _assert_nothing_left(zygote)

    assert outcomes.pop("trivial") == SandboxRun("done", "")
    timeout = SandboxFailure("timeout", "the code did not finish within 1 s")
    assert outcomes == {f"loop-{number}": timeout for number in range(50)}


async def test_a_full_queue_raises_busy() -> None:
    entered, release = anyio.Event(), anyio.Event()

    async def hold(request: dict[str, JsonValue]) -> dict[str, JsonValue]:
        entered.set()
        await release.wait()
        return OK

    async with SandboxPool(LIMITS, max_concurrency=1, max_queue=1) as pool:
        async with anyio.create_task_group() as group:
            group.start_soon(_run, pool, "http.get('https://x.test/')", hold)
            await entered.wait()
            group.start_soon(_works, pool)  # waits in the queue
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(SandboxBusy):
                await pool.run("result = 1", {}, timeout=10)
            release.set()
        await _works(pool)


async def test_http_requests_round_trip_through_the_handler(pool: SandboxPool) -> None:
    requests: list[dict[str, JsonValue]] = []

    async def handler(request: dict[str, JsonValue]) -> dict[str, JsonValue]:
        requests.append(request)
        if request["method"] == "POST":
            return {"ok": False, "code": "host_not_allowed", "message": "not that host"}
        return {"ok": True, "status_code": 201, "headers": {"x-a": "b"}, "body": {"n": 1}}

    source = (
        "answer = http.get('https://api.example.test/v1', params={'q': 'a b'})\n"
        "try:\n"
        "    http.post('https://evil.test/', json={'k': [1, 2]})\n"
        "except HttpError as exc:\n"
        "    refused = str(exc)\n"
        "result = [answer['status_code'], answer['body'], refused]\n"
    )
    outcome = await pool.run(source, {}, timeout=10, http=handler)

    assert outcome == SandboxRun([201, {"n": 1}, "not that host"], "")
    assert [(r["method"], r["url"]) for r in requests] == [
        ("GET", "https://api.example.test/v1"),
        ("POST", "https://evil.test/"),
    ]
    assert requests[0]["params"] == {"q": "a b"}
    assert requests[1]["json"] == {"k": [1, 2]}


async def test_an_error_of_the_http_handler_propagates_and_the_child_is_killed(
    pool: SandboxPool,
) -> None:
    async def broken(request: dict[str, JsonValue]) -> dict[str, JsonValue]:
        raise ProcessLookupError("a bug in the handler")

    with anyio.fail_after(5), pytest.raises(ProcessLookupError, match="a bug in the handler"):
        await pool.run("http.get('https://x.test/')\n" + LOOP, {}, timeout=30, http=broken)
    await _works(pool)


async def test_http_without_a_handler_is_refused_to_the_code(pool: SandboxPool) -> None:
    source = (
        "try:\n    http.get('https://x.test/')\nexcept HttpError as exc:\n    result = str(exc)"
    )
    outcome = await pool.run(source, {}, timeout=10)

    assert outcome == SandboxRun("this tool cannot make HTTP requests", "")


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("x = " + "-" * 200_000 + "1", id="deep-nesting"),
        pytest.param("x = " + "lambda: " * 30_000 + "1", id="deep-lambdas"),
    ],
)
async def test_check_on_a_compile_bomb_is_a_compile_error(pool: SandboxPool, source: str) -> None:
    failure = await pool.check(source)

    assert isinstance(failure, SandboxFailure)
    assert failure.kind == "compile_error"
    assert await pool.check("result = 1") is None
    await _works(pool)


async def test_check_names_the_line_of_a_syntax_error(pool: SandboxPool) -> None:
    failure = await pool.check("a = 1\nb = (\n")

    assert isinstance(failure, SandboxFailure)
    assert failure.kind == "compile_error"
    assert failure.line == 2


async def test_a_cancelled_call_kills_its_child(pool: SandboxPool) -> None:
    running = anyio.Event()

    async def signal_running(request: dict[str, JsonValue]) -> dict[str, JsonValue]:
        running.set()
        return OK

    async with anyio.create_task_group() as group:
        group.start_soon(_run, pool, "http.get('https://x.test/')\n" + LOOP, signal_running)
        await running.wait()
        group.cancel_scope.cancel()

    await _works(pool)


async def test_close_leaves_no_process_behind() -> None:
    pool = SandboxPool(LIMITS, max_concurrency=4)
    await pool.start()
    zygote = pool.zygote_pid
    running = anyio.Event()

    async def signal_running(request: dict[str, JsonValue]) -> dict[str, JsonValue]:
        running.set()
        return OK

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(_run, pool, "http.get('https://x.test/')\n" + LOOP, signal_running)
        await running.wait()
        assert _descendants(os.getpid())
        await pool.close()

    _assert_nothing_left(zygote)


SERVICE = """
import anyio
from sandbox import SandboxPool

async def main():
    async with SandboxPool() as pool:
        async def hold(request):
            print(pool.zygote_pid, flush=True)  # a child is running, waiting for this answer
            await anyio.sleep_forever()
        await pool.run("http.get('https://x.test/')", {}, timeout=60, http=hold)

anyio.run(main)
"""


async def test_the_zygote_and_its_children_die_with_the_service() -> None:
    pidfds: list[int] = []
    with subprocess.Popen([sys.executable, "-c", SERVICE], stdout=subprocess.PIPE) as service:
        try:
            assert service.stdout is not None
            with anyio.fail_after(30):
                zygote = int(await anyio.to_thread.run_sync(service.stdout.readline))
            pidfds = [os.pidfd_open(pid) for pid in (zygote, *_descendants(zygote))]
            assert len(pidfds) >= 2  # the zygote and the running child (and perhaps a spare)

            service.kill()

            with anyio.fail_after(10):
                for pidfd in pidfds:
                    await anyio.wait_readable(pidfd)  # readable once that process has exited
        finally:
            service.kill()
            for pidfd in pidfds:
                os.close(pidfd)


def test_the_zygote_writes_its_reports_as_the_json_encoder_would() -> None:
    from sandbox import zygote
    from sandbox.framing import encode

    assert zygote._forked(4242) == encode({"type": "forked", "pid": 4242})
    killed = zygote._exited(4242, signal.SIGKILL)  # a wait status: killed by that signal
    assert killed == encode({"type": "exited", "pid": 4242, "signal": signal.SIGKILL})
    assert zygote._exited(4242, 3 << 8) == encode({"type": "exited", "pid": 4242, "code": 3})


def test_the_zygote_reads_fork_requests_however_they_are_encoded() -> None:
    from sandbox import zygote
    from sandbox.framing import encode

    for probing in (False, True):
        assert zygote._FORK_REQUESTS[encode({"type": "fork", "probe": probing})] is probing
    assert zygote._parse_request(b'{ "probe": true, "type": "fork" }') is True
    assert zygote._parse_request(b'{"type": "fork"}') is False
    assert zygote._parse_request(b'{"type": "exec"}') is None
    assert zygote._parse_request(b"fork") is None
