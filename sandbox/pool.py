"""Parent side of the sandbox: runs code tools in confined children of one zygote.

Outcomes and errors are in `sandbox.outcomes`. A call waits in the queue (at most
`max_queue` calls, beyond that `SandboxBusy`) for one of `max_concurrency` slots.
Its `timeout` counts from the moment it has a slot: waiting in the queue does not
count, and the caller bounds the whole wait by cancelling, which kills the child
too. Each child serves one call and is SIGKILLed through its pidfd when the call
ends (answered, out of time, cancelled or broken), so a slot is free at once and
the zygote reaps. One spare child is forked, has copied the pages a call writes
(`sandbox.prefault`) and is confined ahead of time, so a call rarely waits for any
of that; it holds no job until a call takes it. A zygote found dead is replaced on
the next call; the calls it was serving end as `crashed`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

import anyio

from sandbox import confine, probe
from sandbox.framing import FramingError, JsonValue
from sandbox.outcomes import (
    DEFAULT_LIMITS,
    HttpHandler,
    RawRun,
    SandboxBusy,
    SandboxError,
    SandboxFailure,
    SandboxLimits,
    SandboxRun,
    SandboxUnavailable,
    ended_without_answer,
    failure_from,
    timed_out,
)
from sandbox.process import (
    ChildProcess,
    ForkFailed,
    HungUp,
    PendingChild,
    ZygoteGone,
    ZygoteProcess,
)
from sandbox.worker import Settings

__all__ = ["SandboxPool"]

_PROBE_SECONDS = 10.0
_SPARES = 1  # children forked ahead, waiting for a job
_REAP_SECONDS = 5.0
_FINAL = frozenset({"result", "error", "compiled", "probe", "raw"})


class SandboxPool:
    """Runs tool code in confined processes forked from one zygote.

    `prefault=False` leaves a child's pages to be copied when first written instead
    of up front (`sandbox.prefault`): for comparison in the benchmark.
    """

    def __init__(
        self,
        limits: SandboxLimits = DEFAULT_LIMITS,
        *,
        max_concurrency: int = 4,
        max_queue: int = 64,
        allow_raw_python_for_tests: bool = False,
        prefault: bool = True,
    ) -> None:
        self._limits = limits
        self._settings = Settings(
            cpu_seconds=limits.cpu_seconds,
            memory_mb=limits.memory_mb,
            max_output_chars=limits.max_output_chars,
            max_result_bytes=limits.max_result_bytes,
            max_message_bytes=limits.max_message_bytes,
            policy_module="sandbox.policy",
            allow_raw_python=allow_raw_python_for_tests,
            prefault=prefault,
        )
        self._slots = anyio.Semaphore(max_concurrency, fast_acquire=True)
        self._max_queue = max_queue
        self._waiting = 0
        self._zygote: ZygoteProcess | None = None
        self._restart = anyio.Lock()
        self._children: set[ChildProcess] = set()
        self._spares: deque[PendingChild] = deque()
        self._layers = dict.fromkeys(probe.LAYERS, False)
        self._running = False

    async def __aenter__(self) -> SandboxPool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def layers(self) -> dict[str, bool]:
        """Which confinement layers the start-up self-test proved applied."""
        return dict(self._layers)

    @property
    def prefault_pages(self) -> int:
        """How many pages each child copies as soon as it is forked (0: none, see `prefault`)."""
        count = self._zygote.ready.get("prefault_pages") if self._zygote is not None else None
        return count if type(count) is int else 0

    @property
    def zygote_pid(self) -> int | None:
        """The zygote's pid (for monitoring and tests)."""
        return self._zygote.pid if self._zygote is not None else None

    async def start(self) -> None:
        """Spawn the zygote and run the self-test."""
        self._running = True
        try:
            await self._replace_zygote(None)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Kill every child and the zygote, and reap them all."""
        self._running = False
        with anyio.CancelScope(shield=True):
            for child in list(self._children):
                child.kill()
            self._discard_spares()
            if self._zygote is not None:
                await self._zygote.stop()
                self._zygote = None

    async def check(self, source: str) -> SandboxFailure | None:
        """Compile `source` in a confined child; a compile bomb only kills that child."""
        answer = await self._call(
            {"type": "compile", "source": source}, self._limits.compile_seconds
        )
        if isinstance(answer, dict) and answer.get("type") == "compiled":
            return None
        failure = answer if isinstance(answer, SandboxFailure) else failure_from(answer)
        if failure.kind == "compile_error":
            return failure
        return SandboxFailure("compile_error", f"the code cannot be compiled: {failure.message}")

    async def run(
        self,
        source: str,
        names: dict[str, JsonValue],
        *,
        timeout: float,  # noqa: ASYNC109 - the deadline kills a process, it does not cancel a task
        http: HttpHandler | None = None,
    ) -> SandboxRun | SandboxFailure:
        """Run `source` with `names` as top-level variables; `http` answers its requests."""
        job: dict[str, JsonValue] = {"type": "run", "source": source, "names": names}
        answer = await self._call(job, timeout, http)
        if isinstance(answer, SandboxFailure):
            return answer
        if answer.get("type") == "result" and isinstance(answer.get("stdout"), str):
            return SandboxRun(answer.get("result"), str(answer["stdout"]))
        return failure_from(answer)

    async def run_raw_python_for_tests(
        self,
        source: str,
        *,
        timeout: float,  # noqa: ASYNC109 - as in `run`
    ) -> RawRun | SandboxFailure:
        """Test hook: unrestricted Python in a confined child (refused unless built for tests)."""
        if not self._settings.allow_raw_python:
            raise SandboxError("raw Python is only for tests")
        answer = await self._call({"type": "raw_python", "source": source}, timeout)
        if isinstance(answer, SandboxFailure):
            return answer
        if answer.get("type") != "raw":
            return failure_from(answer)
        error, number = answer.get("error"), answer.get("errno")
        return RawRun(
            stdout=str(answer.get("stdout")),
            error=error if isinstance(error, str) else None,
            errno=number if type(number) is int else None,
            result=answer.get("result"),
        )

    # The calls.

    async def _call(
        self, job: dict[str, JsonValue], seconds: float, http: HttpHandler | None = None
    ) -> dict[str, JsonValue] | SandboxFailure:
        async with self._slot():
            with anyio.move_on_after(seconds):
                try:
                    child = await self._fork()
                except ZygoteGone:
                    return SandboxFailure("crashed", "the sandbox could not start a process")
                except ForkFailed as exc:
                    return SandboxFailure(
                        "crashed", f"the sandbox could not start a process: {exc}"
                    )
                return await self._attend(child, job, http)
            return timed_out(seconds)

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if not self._running:
            raise SandboxUnavailable("the sandbox pool is not running")
        if self._slots.value == 0 and self._waiting >= self._max_queue:
            raise SandboxBusy(f"{self._waiting} calls are already waiting for the sandbox")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()

    async def _fork(self) -> ChildProcess:
        """A confined child: the spare forked during the previous call, or a fresh one."""
        for _ in range(2):
            zygote = self._zygote
            if zygote is None or not zygote.alive:
                zygote = await self._replace_zygote(zygote)
            pending = self._take_spare(zygote)
            try:
                if pending is None:
                    pending = await self._request(zygote)
                self._keep_spare(await self._request(zygote))
                child = await pending.ready()
            except ZygoteGone:
                if pending is not None:
                    pending.discard()
                continue  # it died since: replace it once and retry
            except BaseException:
                if pending is not None:
                    pending.discard()
                raise
            if not child.has_exited():
                return child
            child.close()  # a spare that died waiting (the zygote is going away)
        raise ZygoteGone("the zygote keeps dying")

    async def _request(self, zygote: ZygoteProcess) -> PendingChild:
        return await zygote.request(probing=False, max_message_bytes=self._limits.max_message_bytes)

    def _discard_spares(self) -> None:
        while self._spares:
            self._spares.popleft().discard()

    def _take_spare(self, zygote: ZygoteProcess) -> PendingChild | None:
        while self._spares:
            spare = self._spares.popleft()
            if spare.zygote is zygote:
                return spare
            spare.discard()
        return None

    def _keep_spare(self, spare: PendingChild) -> None:
        self._spares.append(spare)
        while len(self._spares) > _SPARES:
            self._spares.popleft().discard()

    async def _replace_zygote(self, dead: ZygoteProcess | None) -> ZygoteProcess:
        async with self._restart:
            if self._zygote is not dead and self._zygote is not None:
                return self._zygote  # another call replaced it meanwhile
            if not self._running:
                raise SandboxUnavailable("the sandbox pool is closed")
            if dead is not None:
                self._discard_spares()
                await dead.stop()
            try:
                zygote = await ZygoteProcess.spawn(self._settings)
            except ZygoteGone as exc:
                raise SandboxUnavailable("the sandbox zygote did not start") from exc
            self._zygote = zygote
            error = zygote.ready.get("policy_error")
            if error is not None:
                raise SandboxUnavailable(f"the sandbox policy did not load: {error}")
            self._layers = await self._self_test(zygote)
            return zygote

    async def _self_test(self, zygote: ZygoteProcess) -> dict[str, bool]:
        """Probe a child forked the normal way: which layers hold (all False if none answers)."""
        job: dict[str, JsonValue] = {"type": "probe", "readable_path": probe.world_readable_file()}
        answer: dict[str, JsonValue] | SandboxFailure | None = None
        with anyio.move_on_after(_PROBE_SECONDS):
            try:
                child = await zygote.fork(
                    probing=True, max_message_bytes=self._limits.max_message_bytes
                )
            except (ZygoteGone, ForkFailed):
                return dict.fromkeys(probe.LAYERS, False)
            answer = await self._attend(child, job, None)
        if not isinstance(answer, dict) or answer.get("type") != "probe":
            return dict.fromkeys(probe.LAYERS, False)
        plan = confine.Plan(self._limits.cpu_seconds, self._limits.memory_mb * 1024 * 1024)
        return probe.layers(answer.get("report"), probe.expected_rlimits(plan))

    async def _attend(
        self, child: ChildProcess, job: dict[str, JsonValue], http: HttpHandler | None
    ) -> dict[str, JsonValue] | SandboxFailure:
        """Send the job, answer `http` requests, return the final message; always kill."""
        self._children.add(child)
        try:
            try:
                return await self._converse(child, job, http)
            except FramingError as exc:
                if exc.kind == "too_large":
                    limit = self._limits.max_message_bytes
                    return SandboxFailure(
                        "output_limit", f"the code's output exceeds {limit} bytes"
                    )
                return SandboxFailure("crashed", "the sandboxed process sent a malformed message")
            except HungUp:
                pass  # how it ended tells why (errors of `http` itself propagate as they are)
            # Still under the call's deadline: it may have closed its socket and gone on.
            with anyio.move_on_after(_REAP_SECONDS):
                return ended_without_answer(await child.wait(), self._limits)
            return ended_without_answer(None, self._limits)
        finally:
            # Answered, broke the protocol or ran out of time: it has nothing left to do.
            # SIGKILL cannot be caught, so its slot is free now; the zygote reaps it.
            child.kill()
            child.close()
            self._children.discard(child)

    async def _converse(
        self, child: ChildProcess, job: dict[str, JsonValue], http: HttpHandler | None
    ) -> dict[str, JsonValue] | SandboxFailure:
        await child.send(job)
        while True:
            message = await child.receive()
            kind = message.get("type") if isinstance(message, dict) else None
            if isinstance(message, dict) and kind == "http":
                answer = await _answer_http(http, message.get("request"))
                await child.send({"type": "http_answer", "answer": answer})
            elif isinstance(message, dict) and kind in _FINAL:
                return message
            else:
                return SandboxFailure("crashed", "the sandboxed process sent an unexpected message")


async def _answer_http(http: HttpHandler | None, request: JsonValue) -> dict[str, JsonValue]:
    if not isinstance(request, dict):
        return {"ok": False, "code": "invalid_request", "message": "malformed request"}
    if http is None:
        return {"ok": False, "code": "no_http", "message": "this tool cannot make HTTP requests"}
    return await http(request)
