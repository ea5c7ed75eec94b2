"""What a sandbox call can end with, and the errors of the pool.

    SandboxError            the pool cannot take the call
    +-- SandboxBusy         the queue is full
    +-- SandboxUnavailable  not started, closed, or the zygote does not start

Failures of the code itself are values (`SandboxFailure`), not exceptions.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeAlias

from sandbox.framing import JsonValue
from sandbox.process import Exit

__all__ = [
    "DEFAULT_LIMITS",
    "FAILURE_KINDS",
    "HttpHandler",
    "RawRun",
    "SandboxBusy",
    "SandboxError",
    "SandboxFailure",
    "SandboxLimits",
    "SandboxRun",
    "SandboxUnavailable",
    "ended_without_answer",
    "failure_from",
    "timed_out",
]

HttpHandler: TypeAlias = Callable[[dict[str, JsonValue]], Awaitable[dict[str, JsonValue]]]
FAILURE_KINDS = frozenset(
    {"compile_error", "runtime_error", "timeout", "memory_limit", "output_limit", "crashed"}
)
_CLAIMABLE = FAILURE_KINDS - {"timeout"}  # only the pool decides that one


class SandboxError(Exception):
    """The pool cannot take the call."""


class SandboxBusy(SandboxError):
    """Every slot is taken and the queue is full."""


class SandboxUnavailable(SandboxError):
    """The pool is not running (not started, closed, or its zygote cannot start)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-child limits; the wall-clock deadline is each call's `timeout`."""

    cpu_seconds: int = 30  # RLIMIT_CPU
    memory_mb: int = 256  # RLIMIT_AS: the child's whole address space
    max_output_chars: int = 65_536
    max_result_bytes: int = 1_048_576
    max_message_bytes: int = 4_194_304  # any message from a child
    compile_seconds: float = 10.0  # deadline of `check`


DEFAULT_LIMITS = SandboxLimits()


@dataclass(frozen=True)
class SandboxFailure:
    """The code failed; `kind` is one of `FAILURE_KINDS`.

    `cut`: the message was longer than a child sends and ends where it was cut, maybe
    inside a secret; whoever shows it must mask such a tail.
    """

    kind: str
    message: str
    line: int | None = None
    cut: bool = False


@dataclass(frozen=True)
class SandboxRun:
    """The code finished: its `result` and what it printed."""

    result: JsonValue
    stdout: str


@dataclass(frozen=True)
class RawRun:
    """Test hook only: what unrestricted Python printed, raised and left in `result`."""

    stdout: str
    error: str | None
    errno: int | None
    result: JsonValue


def failure_from(answer: dict[str, JsonValue]) -> SandboxFailure:
    """The failure a child reported in an `error` message (any other message is `crashed`)."""
    kind, message, line = answer.get("kind"), answer.get("message"), answer.get("line")
    if answer.get("type") != "error" or not isinstance(message, str):
        return SandboxFailure("crashed", "the sandboxed process sent an unexpected message")
    if kind not in _CLAIMABLE:
        return SandboxFailure("crashed", "the sandboxed process sent an unexpected message")
    return SandboxFailure(
        str(kind), message, line if type(line) is int else None, answer.get("cut") is True
    )


def timed_out(timeout: float) -> SandboxFailure:
    """The pool's deadline expired."""
    return SandboxFailure("timeout", f"the code did not finish within {timeout:g} s")


def ended_without_answer(ended: Exit | None, limits: SandboxLimits) -> SandboxFailure:
    """What a child that ended without answering died of (`None`: the zygote is gone)."""
    if ended is None:
        return SandboxFailure("crashed", "the sandbox process manager stopped during the call")
    if ended.signal == signal.SIGXCPU:
        return SandboxFailure("timeout", f"the code used more than {limits.cpu_seconds} s of CPU")
    if ended.signal is not None:
        return SandboxFailure(
            "crashed", f"the sandboxed process died ({_signal_name(ended.signal)})"
        )
    return SandboxFailure("crashed", f"the sandboxed process exited with code {ended.code}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
