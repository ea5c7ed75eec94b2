"""Operating-system confinement, applied by each forked child before it reads its job.

Order matters (`apply`): a new session; the parent-death signal; every descriptor
closed but the call socket (stdin/stdout/stderr become /dev/null: the child talks
only through its socket); resource limits; not dumpable; an unprivileged uid when
root, which also empties the capability sets (else the capabilities of the zygote's
user namespace are dropped); the death signal and dumpable again (changing
credentials cleared them); no new privileges; Landlock with every file-system and
TCP right handled and no rule, and signals and abstract sockets scoped, when the
kernel offers it; the seccomp filter last. The network namespace is the zygote's,
made once, with a private SysV IPC namespace (`enter_namespaces`). `sandbox.probe`
verifies the result.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import struct
from dataclasses import dataclass

from sandbox.seccomp import filter_program

__all__ = [
    "ConfinementError",
    "Plan",
    "Prepared",
    "apply",
    "enter_namespaces",
    "landlock_abi",
    "libc",
    "prctl",
]

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_GET_SECCOMP = 21
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
SECCOMP_MODE_FILTER = 2
CLONE_NEWUSER = 0x10000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
NOBODY = 65534
MAX_FILES = 16

_LANDLOCK_CREATE_RULESET = 444
_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_CAPSET = {"x86_64": 126, "aarch64": 91}
_CAPABILITY_VERSION_3 = 0x20080522

_CREATE_RULESET = ctypes.c_long(_LANDLOCK_CREATE_RULESET)
_RESTRICT_SELF = ctypes.c_long(_LANDLOCK_RESTRICT_SELF)

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
libc.prctl.restype = ctypes.c_int
libc.unshare.argtypes = [ctypes.c_int]


class ConfinementError(Exception):
    """A layer the kernel offers could not be applied: the child must not run code."""


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise ConfinementError(f"{what}: {os.strerror(errno)}")
    return result


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0) -> int:
    """`prctl(2)`; raises `ConfinementError` on failure."""
    return _check(libc.prctl(option, arg2, arg3, arg4, 0), f"prctl({option})")


def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers, 0 when it offers none."""
    version = int(
        libc.syscall(
            ctypes.c_long(_LANDLOCK_CREATE_RULESET),
            None,
            ctypes.c_size_t(0),
            ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
        )
    )
    return max(version, 0)


def _landlock_attr(abi: int) -> bytes:
    """`struct landlock_ruleset_attr` handling everything this ABI knows, no rule to follow."""
    if abi <= 0:
        return b""
    fs = (1 << 13) - 1  # ABI 1: execute ... make_sym
    fs |= (1 << 13) if abi >= 2 else 0  # refer
    fs |= (1 << 14) if abi >= 3 else 0  # truncate
    fs |= (1 << 15) if abi >= 5 else 0  # ioctl_dev
    net = 0b11 if abi >= 4 else 0  # bind_tcp, connect_tcp
    scoped = 0b11 if abi >= 6 else 0  # abstract unix sockets, signals
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    return struct.pack("=QQQ", fs, net, scoped)[:size]


@dataclass(frozen=True)
class Plan:
    """What every child applies; built once in the zygote."""

    cpu_seconds: int
    memory_bytes: int
    uid: int = NOBODY
    gid: int = NOBODY
    landlock: bytes = b""
    seccomp: bytes | None = None

    @classmethod
    def build(cls, cpu_seconds: int, memory_bytes: int) -> Plan:
        """The plan for these limits on this kernel and machine."""
        return cls(
            cpu_seconds=cpu_seconds,
            memory_bytes=memory_bytes,
            landlock=_landlock_attr(landlock_abi()),
            seccomp=filter_program(),
        )

    def rlimits(self) -> dict[int, tuple[int, int]]:
        """Soft and hard limits; the hard CPU limit is one second later (SIGXCPU, then KILL)."""
        return {
            resource.RLIMIT_CPU: (self.cpu_seconds, self.cpu_seconds + 1),
            resource.RLIMIT_AS: (self.memory_bytes, self.memory_bytes),
            resource.RLIMIT_NOFILE: (MAX_FILES, MAX_FILES),
            resource.RLIMIT_FSIZE: (0, 0),
            resource.RLIMIT_CORE: (0, 0),
            resource.RLIMIT_NPROC: (0, 0),
            resource.RLIMIT_MEMLOCK: (0, 0),
            resource.RLIMIT_MSGQUEUE: (0, 0),
        }


class Prepared:
    """A plan made ready in the zygote: a child only makes the system calls.

    Every layer is still applied by each child itself; what is shared is memory it
    only reads (the limits, the Landlock attributes, the seccomp program).
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.rlimits = tuple(plan.rlimits().items())
        self.landlock = ctypes.create_string_buffer(plan.landlock, len(plan.landlock))
        self.landlock_size = ctypes.c_size_t(len(plan.landlock))
        program = plan.seccomp or b""
        self._program = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // 8, ctypes.cast(self._program, ctypes.c_void_p))
        self.seccomp = ctypes.addressof(self._fprog) if plan.seccomp is not None else 0


def enter_namespaces() -> bool:
    """Move this process into new network (only a downed loopback) and IPC namespaces."""
    if os.geteuid() == 0:
        return bool(libc.unshare(CLONE_NEWNET | CLONE_NEWIPC) == 0)
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC) != 0:
        return False
    # Keep our own ids inside the new user namespace; children drop its capabilities.
    for path, text in (
        ("/proc/self/setgroups", "deny"),
        ("/proc/self/uid_map", f"{uid} {uid} 1"),
        ("/proc/self/gid_map", f"{gid} {gid} 1"),
    ):
        with open(path, "w", encoding="ascii") as file:
            file.write(text)
    return True


def apply(prepared: Prepared, keep: tuple[int, ...], parent: int) -> None:
    """Confine this (freshly forked) process; raises `ConfinementError` if a layer fails."""
    plan = prepared.plan
    os.setsid()
    _die_with(parent)
    _only_descriptors(keep)
    for limit, values in prepared.rlimits:
        resource.setrlimit(limit, values)
    prctl(PR_SET_DUMPABLE, 0)
    if os.geteuid() == 0:
        # Leaving uid 0 for good also empties the capability sets.
        os.setgroups([])
        os.setresgid(plan.gid, plan.gid, plan.gid)
        os.setresuid(plan.uid, plan.uid, plan.uid)
        if 0 in os.getresuid() or 0 in os.getresgid():
            raise ConfinementError("still root after dropping privileges")
    else:
        _drop_capabilities()  # those of the zygote's own user namespace
    # Changing credentials cleared both of these.
    _die_with(parent)
    prctl(PR_SET_DUMPABLE, 0)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if plan.landlock:
        _restrict_files(prepared)
    if prepared.seccomp:
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prepared.seccomp)


def _die_with(parent: int) -> None:
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        raise ConfinementError("the zygote is gone")


def _only_descriptors(keep: tuple[int, ...]) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != null:
            os.dup2(null, fd)
    start = 3
    for fd in sorted(keep):
        if fd < start:
            raise ConfinementError(f"descriptor {fd} clashes with the standard streams")
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, 1 << 20)


def _drop_capabilities() -> None:
    number = _CAPSET.get(os.uname().machine)
    if number is None:
        return
    header = struct.pack("=Ii", _CAPABILITY_VERSION_3, 0)
    data = bytes(24)  # two of (effective, permitted, inheritable), all empty
    result = libc.syscall(ctypes.c_long(number), ctypes.c_char_p(header), ctypes.c_char_p(data))
    _check(int(result), "capset")


def _restrict_files(prepared: Prepared) -> None:
    ruleset = libc.syscall(_CREATE_RULESET, prepared.landlock, prepared.landlock_size, 0)
    fd = _check(int(ruleset), "landlock_create_ruleset")
    try:
        _check(int(libc.syscall(_RESTRICT_SELF, fd, 0)), "landlock_restrict_self")
    finally:
        os.close(fd)
