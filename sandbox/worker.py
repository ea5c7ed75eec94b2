"""The child process: confined first, then one job from its call socket, one answer, exit.

Jobs: `run` (compile and run with the policy; `http` requests travel over the
socket), `compile`, `probe` (only in a child the zygote forked for the self-test)
and `raw_python` (unrestricted Python, only when the pool was built for tests).
The child never writes to stdout or stderr (they are /dev/null): everything it
says goes through the call socket, and it leaves with `os._exit`.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import NoReturn, TypeAlias

from sandbox import confine, prefault, probe
from sandbox.framing import FramingError, JsonValue, encode_frame, receive_frame, send_frame

__all__ = ["JOB_BYTES", "Child", "Settings", "child_main", "rehearse", "warm_up"]

HttpCall: TypeAlias = Callable[[dict[str, JsonValue]], dict[str, JsonValue]]
JOB_BYTES = 64 * 1024 * 1024  # what the pool may send (it is trusted; the cap is a backstop)
_WARM_UP = 'import json\nprint("warm", x)\nresult = {"a": [x, 2.5, "s", json.dumps(None)]}\n'
# A spare waits this long for a job before it warms up: when calls come back to back,
# the job usually arrives sooner, and warming up would only take CPU from the call.
_IDLE_SECONDS = 0.002
# The longest error message a child sends. A run's messages quote its values (secrets
# among them): one cut here says so (`cut`), so that the service masks a secret the
# cut runs through before it cuts the message again for the caller.
_MAX_MESSAGE_CHARS = 65_536
_EXIT_FAILED = 70
_EXIT_HUNG_UP = 71


_NUMBERS = (
    "cpu_seconds",
    "memory_mb",
    "max_output_chars",
    "max_result_bytes",
    "max_message_bytes",
)


@dataclass(frozen=True)
class Settings:
    """What the pool tells the zygote once, for every child."""

    cpu_seconds: int
    memory_mb: int
    max_output_chars: int
    max_result_bytes: int
    max_message_bytes: int
    policy_module: str
    allow_raw_python: bool = False
    prefault: bool = True

    def to_message(self) -> dict[str, JsonValue]:
        """The `config` message."""
        return {"type": "config", **self.__dict__}

    @classmethod
    def from_message(cls, message: JsonValue) -> Settings:
        """Parse a `config` message (from the pool, which is trusted)."""
        if not isinstance(message, dict) or message.get("type") != "config":
            raise ValueError("expected a config message")
        numbers = {name: message.get(name) for name in _NUMBERS}
        module, raw = message.get("policy_module"), message.get("allow_raw_python")
        prefault = message.get("prefault")
        if not all(type(value) is int for value in numbers.values()):
            raise ValueError("malformed config message")
        if not isinstance(module, str) or not isinstance(raw, bool):
            raise ValueError("malformed config message")  # noqa: TRY004 - a bad message
        if not isinstance(prefault, bool):
            raise ValueError("malformed config message")  # noqa: TRY004 - a bad message
        flags = {"allow_raw_python": raw, "prefault": prefault}
        return cls(**numbers, policy_module=module, **flags)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Child:
    """Everything a child needs, prepared by the zygote before any fork."""

    settings: Settings
    confinement: confine.Prepared
    policy: ModuleType | None
    zygote: int
    pages: prefault.Pages = prefault.NO_PAGES  # what a call writes, copied up front


def child_main(child: Child, call_fd: int, *, probing: bool) -> NoReturn:
    """Confine this freshly forked process, serve one job, exit. Never returns."""
    code = _EXIT_FAILED
    call = socket.socket(fileno=call_fd)
    try:
        child.pages.populate()  # before the seccomp filter refuses it
        witness = probe.Witness.collect() if probing else None
        keep = (call_fd,) if witness is None else (call_fd, witness.status_fd)
        confine.apply(child.confinement, keep, child.zygote)
        if witness is None and child.policy is not None:
            warm_up(child.policy, call)
        job = receive_frame(call, JOB_BYTES)
        _answer(call, _serve(child, call, job, witness), child.settings.max_message_bytes)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - the worker's edge: report, never unwind into the zygote
        with contextlib.suppress(BaseException):
            send_frame(call, _error("crashed", f"the sandbox worker failed: {type(exc).__name__}"))
    finally:
        os._exit(code)


def _job_waiting(call: socket.socket, seconds: float = 0.0) -> bool:
    """Whether the job has arrived (within `seconds`): then warming up would only delay it."""
    return bool(select.select([call], [], [], seconds)[0])


def warm_up(policy: ModuleType, call: socket.socket | None = None) -> None:
    """Run a small trusted program, so that the call's own first compile and run is not a first.

    A child often waits for its job (a spare forked ahead of time): this moves the
    rest of a first run's cost (caches, any page pre-faulting missed or could not
    copy) out of the call's latency. In a child (`call` given), each step is left
    out once the job has arrived: it would only delay the job. The zygote runs it
    too, before any fork, so the interpreter specializes that code path once.
    """
    if call is not None and _job_waiting(call, _IDLE_SECONDS):
        return
    code = policy.compile_tool(_WARM_UP)
    if call is not None and _job_waiting(call):
        return
    policy.run_tool(code, {"x": 1}, http=None)


def rehearse(child: Child, keep: tuple[int, ...]) -> None:
    """A child's work for one call of the warm-up program, from confinement to answer.

    Run in a child of the zygote by `prefault.calibrate`: the pages written here are
    the ones every child copies up front.
    """
    ours, theirs = socket.socketpair()  # the call socket (made before seccomp refuses it)
    confine.apply(child.confinement, (*keep, ours.fileno(), theirs.fileno()), os.getppid())
    theirs.sendall(encode_frame({"type": "run", "source": _WARM_UP, "names": {"x": 1}}))
    _answer(ours, _serve(child, ours, receive_frame(ours, JOB_BYTES), None), JOB_BYTES)


def _serve(
    child: Child, call: socket.socket, job: JsonValue, witness: probe.Witness | None
) -> dict[str, JsonValue]:
    if not isinstance(job, dict):
        return _error("crashed", "no job")
    kind, source = job.get("type"), job.get("source")
    if kind == "probe" and witness is not None:
        path = job.get("readable_path")
        return {"type": "probe", "report": probe.report(witness, str(path), child.zygote)}
    if kind == "raw_python" and child.settings.allow_raw_python and isinstance(source, str):
        return _raw_python(source)
    if child.policy is None or not isinstance(source, str):
        return _error("crashed", "the sandbox cannot run this job")
    if kind == "compile":
        return _compile(child.policy, source)
    names = job.get("names")
    if kind == "run" and isinstance(names, dict):
        return _run(child, call, source, names)
    return _error("crashed", "the sandbox cannot run this job")


def _compile(policy: ModuleType, source: str) -> dict[str, JsonValue]:
    try:
        policy.compile_tool(source)
    except policy.PolicyError as exc:
        return _error(exc.kind, exc.message, exc.line)
    except MemoryError:
        return _error("memory_limit", "compiling the code ran out of memory")
    return {"type": "compiled"}


def _run(
    child: Child, call: socket.socket, source: str, names: dict[str, JsonValue]
) -> dict[str, JsonValue]:
    policy = child.policy
    assert policy is not None
    settings = child.settings
    limits = policy.PolicyLimits(
        max_output_chars=settings.max_output_chars, max_result_bytes=settings.max_result_bytes
    )
    try:
        code = policy.compile_tool(source)
        result, stdout = policy.run_tool(code, names, http=_http_caller(call), limits=limits)
    except policy.PolicyError as exc:
        if exc.kind == "runtime_error" and exc.message.startswith("MemoryError"):
            return _error("memory_limit", _memory_message(settings.memory_mb))
        if exc.kind == "invalid_result":
            return _error("runtime_error", f"invalid result: {exc.message}", exc.line)
        return _error(exc.kind, exc.message, exc.line)
    except MemoryError:
        return _error("memory_limit", _memory_message(settings.memory_mb))
    return {"type": "result", "result": result, "stdout": stdout}


def _memory_message(memory_mb: int) -> str:
    return f"the code used more than the memory limit of {memory_mb} MB"


def _http_caller(call: socket.socket) -> HttpCall:
    def http(request: dict[str, JsonValue]) -> dict[str, JsonValue]:
        frame = encode_frame({"type": "http", "request": request})  # TypeError: not JSON
        try:
            call.sendall(frame)
            reply = receive_frame(call, JOB_BYTES)
        except (OSError, FramingError):
            reply = None
        answer = reply.get("answer") if isinstance(reply, dict) else None
        if not isinstance(answer, dict):
            os._exit(_EXIT_HUNG_UP)  # the pool hung up (the code must not catch this)
        return answer

    return http


def _raw_python(source: str) -> dict[str, JsonValue]:
    """Test hook: unrestricted Python in the confined child, to test the OS layers alone."""
    printed = io.StringIO()
    namespace: dict[str, object] = {"__builtins__": builtins, "__name__": "__raw__"}
    error: str | None = None
    number: int | None = None
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(source, "<raw>", "exec"), namespace)  # noqa: S102
    except BaseException as exc:  # noqa: BLE001 - raw test code may raise anything
        error = f"{type(exc).__name__}: {exc}"
        number = exc.errno if isinstance(exc, OSError) else None
    return {
        "type": "raw",
        "stdout": printed.getvalue()[:65_536],
        "error": error,
        "errno": number,
        "result": _as_json(namespace.get("result")),
    }


def _as_json(value: object) -> JsonValue:
    try:
        encode_frame(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return repr(value)
    return value  # type: ignore[return-value]


def _answer(call: socket.socket, answer: dict[str, JsonValue], max_bytes: int) -> None:
    try:
        frame = encode_frame(answer)
    except (TypeError, ValueError) as exc:
        frame = encode_frame(_error("runtime_error", f"invalid result: not JSON ({exc})"))
    if len(frame) - 4 > max_bytes:
        frame = encode_frame(_error("output_limit", f"the answer exceeds {max_bytes} bytes"))
    call.sendall(frame)


def _error(kind: str, message: str, line: int | None = None) -> dict[str, JsonValue]:
    answer: dict[str, JsonValue] = {"type": "error", "kind": kind, "line": line}
    if len(message) > _MAX_MESSAGE_CHARS:
        answer["cut"] = True
    answer["message"] = message[:_MAX_MESSAGE_CHARS]
    return answer
