"""The pool's handles on the zygote process and on each forked child."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio

from sandbox.channel import AsyncChannel, receive_datagram, send_datagram
from sandbox.framing import FramingError, JsonValue
from sandbox.worker import Settings

__all__ = [
    "ChildProcess",
    "Exit",
    "ForkFailed",
    "HungUp",
    "PendingChild",
    "ZygoteGone",
    "ZygoteProcess",
]

_ROOT = Path(__file__).resolve().parent.parent  # where `sandbox` can be imported from
_START_SECONDS = 30.0
_STOP_SECONDS = 5.0


class ZygoteGone(Exception):
    """The zygote did not answer a fork request: it has died."""


class HungUp(Exception):
    """The child closed its end of the call socket (or died) without a final answer."""


class ForkFailed(Exception):
    """The zygote could not fork (no memory, too many processes); it still serves."""


@dataclass(frozen=True)
class Exit:
    """How a child ended, as the zygote saw it when reaping."""

    signal: int | None = None
    code: int | None = None


class ChildProcess:
    """One forked child: its call socket, its status socket and a pidfd to kill it by."""

    def __init__(self, pid: int, pidfd: int, call: AsyncChannel, status: socket.socket) -> None:
        self.pid = pid
        self.channel = call
        self._pidfd = pidfd
        self._status = status
        self._exit: Exit | None = None
        self._ended = False

    async def send(self, message: JsonValue) -> None:
        """Write one frame to the child; `HungUp` if it is gone."""
        try:
            await self.channel.send(message)
        except OSError as exc:
            raise HungUp from exc

    async def receive(self) -> JsonValue:
        """Read one frame from the child; `HungUp` at its end (`FramingError` if malformed)."""
        try:
            message = await self.channel.receive()
        except OSError as exc:
            raise HungUp from exc
        if message is None:
            raise HungUp
        return message

    def has_exited(self) -> bool:
        """Whether the process has already ended (without waiting)."""
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        return bool(poller.poll(0))

    def kill(self) -> None:
        """SIGKILL the child; harmless once it is gone (the pidfd cannot name another)."""
        if not self._ended:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    async def wait(self) -> Exit | None:
        """Wait until the zygote reaps the child; `None` if the zygote went away first."""
        if self._ended:
            return self._exit
        try:
            received = await receive_datagram(self._status)
        except (OSError, FramingError):
            received = None
        self._ended = True
        if received is not None:
            message, _ = received
            if isinstance(message, dict) and message.get("type") == "exited":
                self._exit = Exit(
                    _int_or_none(message.get("signal")), _int_or_none(message.get("code"))
                )
        return self._exit

    def close(self) -> None:
        """Release the sockets and the pidfd."""
        self.channel.sock.close()
        self._status.close()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


def _int_or_none(value: JsonValue) -> int | None:
    return value if type(value) is int else None


class PendingChild:
    """A fork requested from the zygote, not yet confirmed."""

    def __init__(
        self, zygote: ZygoteProcess, call: socket.socket, status: socket.socket, max_bytes: int
    ) -> None:
        self.zygote = zygote
        self._call = call
        self._status = status
        self._max_bytes = max_bytes

    async def ready(self) -> ChildProcess:
        """The forked child; raises `ZygoteGone` if the zygote died instead."""
        try:
            received = await receive_datagram(self._status, max_fds=1)
        except (OSError, FramingError):
            received = None
        except BaseException:
            self.discard()
            raise
        message, fds = received if received is not None else (None, [])
        if isinstance(message, dict) and message.get("type") == "fork_failed" and not fds:
            self.discard()
            raise ForkFailed(str(message.get("message")))
        pid = _forked_pid(message)
        if pid is None or len(fds) != 1:
            self.discard()
            for fd in fds:
                os.close(fd)
            self.zygote.mark_gone()
            raise ZygoteGone("the zygote did not fork")
        return ChildProcess(pid, fds[0], AsyncChannel(self._call, self._max_bytes), self._status)

    def discard(self) -> None:
        """Give up on it: the child (if any) meets end-of-file and exits."""
        _close(self._call, self._status)


class ZygoteProcess:
    """The running zygote: spawn it, ask it to fork, stop it."""

    def __init__(self, process: subprocess.Popen[bytes], control: socket.socket) -> None:
        self._process = process
        self._control = control
        self._pidfd = os.pidfd_open(process.pid)
        self._send = anyio.Lock()
        self._gone = False
        self._stopped = False
        self.pid = process.pid
        self.ready: dict[str, JsonValue] = {}

    @classmethod
    async def spawn(cls, settings: Settings) -> ZygoteProcess:
        """Start `python -m sandbox.zygote` with a clean environment and wait until it is ready."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = _popen(theirs.fileno())
        finally:
            theirs.close()
        ours.setblocking(False)
        zygote = cls(process, ours)
        try:
            with anyio.fail_after(_START_SECONDS):
                await send_datagram(ours, settings.to_message())
                received = await receive_datagram(ours)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await zygote.stop()
            raise
        message = received[0] if received is not None else None
        if not isinstance(message, dict) or message.get("type") != "ready":
            await zygote.stop()
            raise ZygoteGone("the zygote did not start")
        zygote.ready = message
        return zygote

    def mark_gone(self) -> None:
        """Remember that the zygote stopped answering."""
        self._gone = True

    @property
    def alive(self) -> bool:
        """Whether the zygote is (as far as we know) serving fork requests."""
        return not self._gone and self._process.poll() is None

    async def request(self, *, probing: bool, max_message_bytes: int) -> PendingChild:
        """Ask for a child (it forks and confines itself while we do other things)."""
        call, call_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        status, status_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        status.setblocking(False)
        try:
            async with self._send:
                await send_datagram(
                    self._control,
                    {"type": "fork", "probe": probing},
                    (call_theirs.fileno(), status_theirs.fileno()),
                )
        except (OSError, anyio.ClosedResourceError):
            _close(call, status)
            self._gone = True
            raise ZygoteGone("the zygote is not listening") from None
        except BaseException:
            _close(call, status)
            raise
        finally:
            _close(call_theirs, status_theirs)
        return PendingChild(self, call, status, max_message_bytes)

    async def fork(self, *, probing: bool, max_message_bytes: int) -> ChildProcess:
        """`request` a child and wait for it."""
        pending = await self.request(probing=probing, max_message_bytes=max_message_bytes)
        return await pending.ready()

    async def stop(self) -> None:
        """Close the control socket (the zygote kills and reaps its children), then reap it."""
        self._gone = True
        if self._stopped:
            return
        self._stopped = True
        anyio.notify_closing(self._control)
        self._control.close()
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(_STOP_SECONDS):
                await anyio.wait_readable(self._pidfd)
            if self._process.poll() is None:
                self._process.kill()
                await anyio.wait_readable(self._pidfd)
            self._process.wait()
            os.close(self._pidfd)


def _forked_pid(message: JsonValue) -> int | None:
    if not isinstance(message, dict) or message.get("type") != "forked":
        return None
    pid = message.get("pid")
    return pid if type(pid) is int else None


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        sock.close()


def _popen(control_fd: int) -> subprocess.Popen[bytes]:
    # No secret ever reaches the zygote: a clean environment, nothing but the fd in argv.
    # A new session: a terminal's Ctrl-C is for the service, which then closes the pool.
    # (Popen blocks the loop for the fork and exec only: about a millisecond, at start.)
    return subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
        [sys.executable, "-E", "-s", "-B", "-X", "utf8", "-m", "sandbox.zygote", str(control_fd)],
        pass_fds=(control_fd,),
        env={},
        cwd=_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        close_fds=True,
        start_new_session=True,
    )
