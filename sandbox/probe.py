"""The self-test: what a confined child can observe, and which layers that proves.

The child collects the report (`Witness` before confinement for what only an
unconfined process can see, `report` after it); the pool turns it into booleans
(`layers`). Each boolean needs the layer's own effect, not merely a flag: for
Landlock a world-readable file that cannot be opened, for seccomp `socket()`,
`fork()` and `kill()` refused with EPERM, for the network namespace another
namespace than the service's with only a downed loopback.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import signal
import socket
import stat
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass

from sandbox import confine
from sandbox.framing import JsonValue

__all__ = ["LAYERS", "Witness", "expected_rlimits", "layers", "report", "world_readable_file"]

LAYERS = (
    "rlimits",
    "no_new_privs",
    "non_dumpable",
    "pdeathsig",
    "unprivileged_uid",
    "network_namespace",
    "landlock",
    "seccomp",
)
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_RLIMITS = {
    "RLIMIT_CPU": resource.RLIMIT_CPU,
    "RLIMIT_AS": resource.RLIMIT_AS,
    "RLIMIT_NOFILE": resource.RLIMIT_NOFILE,
    "RLIMIT_FSIZE": resource.RLIMIT_FSIZE,
    "RLIMIT_CORE": resource.RLIMIT_CORE,
    "RLIMIT_NPROC": resource.RLIMIT_NPROC,
    "RLIMIT_MEMLOCK": resource.RLIMIT_MEMLOCK,
    "RLIMIT_MSGQUEUE": resource.RLIMIT_MSGQUEUE,
}


@dataclass(frozen=True)
class Witness:
    """Seen by the child before confinement; `status_fd` stays open through it."""

    network: dict[str, JsonValue]
    status_fd: int

    @classmethod
    def collect(cls) -> Witness:
        """Look at the network namespace and open /proc/self/status for later."""
        network: dict[str, JsonValue] = {"namespace": os.readlink("/proc/self/ns/net")}
        network["interfaces"] = [name for _, name in socket.if_nameindex()]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            request = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack_from("16sH", fcntl.ioctl(probe, _SIOCGIFFLAGS, request))[1]
            network["loopback_up"] = bool(flags & _IFF_UP)
        network["connect_errno"] = _errno_of(_connect_loopback)
        return cls(network, os.open("/proc/self/status", os.O_RDONLY))


def report(witness: Witness, readable_path: str, parent: int) -> dict[str, JsonValue]:
    """What the confined child observes about itself."""
    death_signal = ctypes.c_int(0)
    confine.libc.prctl(confine.PR_GET_PDEATHSIG, ctypes.addressof(death_signal), 0, 0, 0)
    status = os.pread(witness.status_fd, 16_384, 0).decode("ascii", "replace")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rlimits": {name: list(resource.getrlimit(limit)) for name, limit in _RLIMITS.items()},
        "no_new_privs": confine.prctl(confine.PR_GET_NO_NEW_PRIVS),
        "dumpable": confine.prctl(confine.PR_GET_DUMPABLE),
        "pdeathsig": death_signal.value,
        "seccomp_mode": confine.libc.prctl(confine.PR_GET_SECCOMP, 0, 0, 0, 0),
        "status_seccomp": fields.get("Seccomp", "").strip(),
        "cap_effective": fields.get("CapEff", "").strip(),
        "cap_permitted": fields.get("CapPrm", "").strip(),
        "uids": list(os.getresuid()),
        "gids": list(os.getresgid()),
        "groups": list(os.getgroups()),
        "network": witness.network,
        "socket_errno": _errno_of(lambda: socket.socket(socket.AF_UNIX).close()),
        "open_errno": _errno_of(lambda: open(readable_path, "rb").close()),
        "fork_errno": _errno_of(_fork_and_leave),
        "kill_errno": _errno_of(lambda: os.kill(parent, 0)),
        "landlock_abi": confine.landlock_abi(),
    }


def _connect_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.connect(("127.0.0.1", 9))


def _fork_and_leave() -> None:
    if os.fork() == 0:
        os._exit(0)


def _errno_of(action: Callable[[], object]) -> int | None:
    """The errno `action()` fails with; `None` when it succeeds."""
    try:
        action()
    except OSError as exc:
        return exc.errno or -1
    return None


def layers(found: JsonValue, expected_rlimits: dict[str, tuple[int, int]]) -> dict[str, bool]:
    """Which layers the child's report proves to be applied."""
    if not isinstance(found, dict):
        return dict.fromkeys(LAYERS, False)
    rlimits = found.get("rlimits")
    network = found.get("network")
    if not isinstance(rlimits, dict) or not isinstance(network, dict):
        return dict.fromkeys(LAYERS, False)
    uids, gids, abi = found.get("uids"), found.get("gids"), found.get("landlock_abi")
    return {
        "rlimits": all(rlimits.get(k) == list(v) for k, v in expected_rlimits.items()),
        "no_new_privs": found.get("no_new_privs") == 1,
        "non_dumpable": found.get("dumpable") == 0,
        "pdeathsig": found.get("pdeathsig") == signal.SIGKILL,
        "unprivileged_uid": isinstance(uids, list)
        and isinstance(gids, list)
        and 0 not in uids
        and 0 not in gids
        and found.get("groups") in ([], gids[:1])
        and found.get("cap_effective") == found.get("cap_permitted") == "0000000000000000",
        "network_namespace": network.get("namespace") != os.readlink("/proc/self/ns/net")
        and network.get("interfaces") == ["lo"]
        and network.get("loopback_up") is False
        and network.get("connect_errno") == errno.ENETUNREACH,
        "landlock": isinstance(abi, int) and abi > 0 and found.get("open_errno") == errno.EACCES,
        "seccomp": found.get("seccomp_mode") == confine.SECCOMP_MODE_FILTER
        and found.get("status_seccomp") == "2"
        and found.get("socket_errno") == errno.EPERM
        and found.get("fork_errno") == errno.EPERM
        and found.get("kill_errno") == errno.EPERM,
    }


def expected_rlimits(plan: confine.Plan) -> dict[str, tuple[int, int]]:
    """The limits a child under `plan` must report, by name."""
    names = {number: name for name, number in _RLIMITS.items()}
    return {names[number]: values for number, values in plan.rlimits().items()}


def world_readable_file() -> str:
    """A file any uid may read, so that failing to open it proves Landlock."""
    for path in (os.path.realpath(sys.executable), "/etc/passwd", "/etc/hostname"):
        if os.path.isfile(path) and os.stat(path).st_mode & stat.S_IROTH:
            return path
    return os.path.realpath(sys.executable)
