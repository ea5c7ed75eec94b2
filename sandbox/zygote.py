"""The zygote: started once by the pool, it forks one confined child per call.

Run as `python -m sandbox.zygote <control fd>` with a clean environment. Protocol
on the control socket (SOCK_SEQPACKET, JSON datagrams): the pool sends `config`,
the zygote answers `ready` (after importing the policy and entering its empty
network and IPC namespaces, single-threaded), then the pool sends `fork` requests, each
with two descriptors: the child's end of the call socket and the zygote's end of
a per-call status socket. On the status socket the zygote sends `forked` (the pid,
with a pidfd so the pool can SIGKILL it without a pid-reuse race) and later
`exited` (the signal or exit code, after reaping). The job and its secrets never
pass through the zygote. Before `ready`, the zygote learns which of its pages a call
writes (`sandbox.prefault`); each child copies those first. When the control socket
closes, the zygote kills and reaps its children and exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import importlib
import os
import select
import signal
import socket
import sys
from dataclasses import dataclass
from types import ModuleType

from sandbox import confine, prefault
from sandbox.framing import (
    FramingError,
    JsonValue,
    decode,
    encode,
    receive_datagram,
    receive_encoded,
    send_datagram,
    send_encoded,
)
from sandbox.worker import Child, Settings, child_main, rehearse, warm_up

__all__ = ["main"]

# Loaded before any fork: a confined child cannot open files, so nothing may be
# imported lazily afterwards.
_PRELOAD = (
    "_strptime",
    "encodings.idna",
    "encodings.punycode",
    "encodings.latin_1",
    "encodings.ascii",
    "encodings.utf_16",
    "encodings.utf_32",
    "encodings.unicode_escape",
    "encodings.raw_unicode_escape",
    "encodings.cp1252",
    "unicodedata",
)
_TEST_PRELOAD = ("subprocess",)
# Runs of the children's trusted warm-up program in the zygote: the interpreter then
# specializes that code path here, once, instead of writing it in every child.
_POLICY_ROUNDS = 20
# The requests as the pool encodes them, so the zygote rarely needs to parse one: after
# each fork, every page it writes is copied, and the json module touches many.
_FORK_REQUESTS = {encode({"type": "fork", "probe": probing}): probing for probing in (False, True)}


@dataclass
class _Running:
    pid: int
    pidfd: int
    status: socket.socket


class Zygote:
    """Forks children on request and reports how they ended."""

    def __init__(self, control: socket.socket, child: Child) -> None:
        self._control = control
        self._child = child
        self._running: dict[int, _Running] = {}
        self._poller = select.poll()
        self._poller.register(control, select.POLLIN)

    def serve(self) -> None:
        """Serve fork requests until the control socket closes; then clean up."""
        try:
            while True:
                for fd, _ in self._poller.poll():
                    if fd in self._running:
                        self._reap(fd)
                    elif not self._request():
                        return
        finally:
            self._shutdown()

    def _request(self) -> bool:
        try:
            received = receive_encoded(self._control, max_fds=2)
        except FramingError:
            return True
        if received is None:
            return False
        data, fds = received
        probing = _FORK_REQUESTS.get(data)
        if probing is None:
            probing = _parse_request(data)
        if probing is not None and len(fds) == 2:
            self._fork(fds[0], fds[1], probing=probing)
        else:
            for fd in fds:
                os.close(fd)
        return True

    def _fork(self, call_fd: int, status_fd: int, *, probing: bool) -> None:
        status = socket.socket(fileno=status_fd)
        try:
            pid = os.fork()
        except OSError as exc:  # EAGAIN, ENOMEM: this call fails, the zygote goes on
            os.close(call_fd)
            message: JsonValue = {"type": "fork_failed", "message": os.strerror(exc.errno or 0)}
            self._tell(status, encode(message))
            status.close()
            return
        if pid == 0:
            try:
                child_main(self._child, call_fd, probing=probing)
            finally:
                os._exit(70)
        os.close(call_fd)
        pidfd = os.pidfd_open(pid)
        self._running[pidfd] = _Running(pid, pidfd, status)
        self._poller.register(pidfd, select.POLLIN)
        self._tell(status, _forked(pid), (pidfd,))

    def _reap(self, pidfd: int) -> None:
        running = self._running.pop(pidfd)
        _, status = os.waitpid(running.pid, 0)  # a readable pidfd: it has exited
        self._poller.unregister(pidfd)
        self._tell(running.status, _exited(running.pid, status))
        running.status.close()
        os.close(pidfd)

    def _tell(self, sock: socket.socket, data: bytes, fds: tuple[int, ...] = ()) -> None:
        # The pool may have given up on this call already; the child then meets EOF.
        # (Not contextlib.suppress: its objects would be written after every fork.)
        try:  # noqa: SIM105
            send_encoded(sock, data, fds)
        except OSError:
            pass

    def _shutdown(self) -> None:
        for running in self._running.values():
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(running.pidfd, signal.SIGKILL)
        for pidfd in list(self._running):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._running[pidfd].pid, 0)
            self._reap_after_wait(pidfd)

    def _reap_after_wait(self, pidfd: int) -> None:
        running = self._running.pop(pidfd)
        running.status.close()
        os.close(pidfd)


def _parse_request(data: bytes) -> bool | None:
    """Whether a fork request (encoded other than the pool does) asks for a probe."""
    try:
        message = decode(data)
    except FramingError:
        return None
    if isinstance(message, dict) and message.get("type") == "fork":
        return message.get("probe") is True
    return None


def _forked(pid: int) -> bytes:
    """The `forked` report, as `encode` would write it."""
    return b'{"type":"forked","pid":%d}' % pid


def _exited(pid: int, status: int) -> bytes:
    """The `exited` report, as `encode` would write it."""
    if os.WIFSIGNALED(status):
        return b'{"type":"exited","pid":%d,"signal":%d}' % (pid, os.WTERMSIG(status))
    return b'{"type":"exited","pid":%d,"code":%d}' % (pid, os.WEXITSTATUS(status))


def _load(settings: Settings) -> tuple[ModuleType | None, str | None]:
    try:
        policy = importlib.import_module(settings.policy_module)
    except Exception as exc:  # noqa: BLE001 - reported to the pool, which refuses to start
        return None, f"{type(exc).__name__}: {exc}"
    preload = _PRELOAD + (_TEST_PRELOAD if settings.allow_raw_python else ())
    for name in (*preload, *getattr(policy, "ALLOWED_MODULES", ())):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _warm_up()
    for _ in range(_POLICY_ROUNDS):
        warm_up(policy)
    return policy, None


def _warm_up() -> None:
    """Let libc and OpenSSL read their files now (time zone, OpenSSL configuration)."""
    import hashlib
    import time

    time.localtime()
    for name in sorted(hashlib.algorithms_guaranteed):
        with contextlib.suppress(ValueError, TypeError):
            hashlib.new(name, b"").digest()


def main() -> None:
    """Entry point of `python -m sandbox.zygote <control fd>`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service decides when we stop
    control = socket.socket(fileno=int(sys.argv[1]))
    received = receive_datagram(control)
    if received is None:
        return
    settings = Settings.from_message(received[0])
    policy, error = _load(settings)
    network = confine.enter_namespaces()
    plan = confine.Plan.build(settings.cpu_seconds, settings.memory_mb * 1024 * 1024)
    child = Child(settings, confine.Prepared(plan), policy, os.getpid())
    gc.collect()
    gc.freeze()  # fewer pages copied into each child
    if policy is not None and settings.prefault:
        pages = prefault.calibrate(functools.partial(rehearse, child))
        child = dataclasses.replace(child, pages=pages)
        gc.freeze()
    ready: JsonValue = {
        "type": "ready",
        "pid": os.getpid(),
        "policy_error": error,
        "network_namespace": network,
        "landlock": bool(plan.landlock),
        "seccomp": plan.seccomp is not None,
        "prefault_pages": child.pages.count,
    }
    send_datagram(control, ready)
    Zygote(control, child).serve()


if __name__ == "__main__":
    main()
