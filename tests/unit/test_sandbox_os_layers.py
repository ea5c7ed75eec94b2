"""The OS layers hold on their own: unrestricted Python (the test hook) in a confined child.

Each test makes an escape attempt with real builtins and the real `os`, checks the
refusal, then checks that a normal call still works.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox import RawRun, SandboxLimits, SandboxPool, SandboxRun, seccomp
from sandbox.seccomp import filter_program

pytestmark = pytest.mark.anyio


LIMITS = SandboxLimits(cpu_seconds=20, memory_mb=256)
ATTEMPT = """
import ctypes, errno, os, resource, signal, socket, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)

def syscall_result(value, what):
    if value == -1:
        raise OSError(ctypes.get_errno(), what)

def attempt(action):
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    except Exception as exc:
        return type(exc).__name__ + ": " + str(exc)
    return "allowed"

"""


@pytest.fixture
async def pool() -> AsyncIterator[SandboxPool]:
    async with SandboxPool(LIMITS, allow_raw_python_for_tests=True) as pool:
        yield pool


async def _attempt(pool: SandboxPool, action: str) -> str:
    """What `attempt(lambda: <action>)` says in a confined child: an errno name or `allowed`."""
    outcome = await pool.run_raw_python_for_tests(
        ATTEMPT + f"result = attempt(lambda: {action})", timeout=10
    )
    assert isinstance(outcome, RawRun), outcome
    assert outcome.error is None, outcome.error
    assert isinstance(outcome.result, str)
    return outcome.result


async def _raw(pool: SandboxPool, source: str) -> RawRun:
    outcome = await pool.run_raw_python_for_tests(ATTEMPT + source, timeout=10)
    assert isinstance(outcome, RawRun), outcome
    assert outcome.error is None, outcome.error
    return outcome


async def _still_works(pool: SandboxPool) -> None:
    assert await pool.run("result = n * 2", {"n": 21}, timeout=10) == SandboxRun(42, "")


async def test_the_self_test_proves_every_layer(pool: SandboxPool) -> None:
    assert pool.layers == {
        "rlimits": True,
        "no_new_privs": True,
        "non_dumpable": True,
        "pdeathsig": True,
        "unprivileged_uid": True,
        "network_namespace": True,
        "landlock": True,
        "seccomp": True,
    }


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/etc/hostname",
        "/proc/1/environ",
        "/proc/self/status",
        str(Path(__file__).resolve()),
    ],
)
async def test_files_cannot_be_read(pool: SandboxPool, path: str) -> None:
    assert await _attempt(pool, f"open({path!r}, 'rb').read()") == "EACCES"
    await _still_works(pool)


async def test_directories_cannot_be_listed(pool: SandboxPool) -> None:
    assert await _attempt(pool, "os.listdir('/')") == "EACCES"
    await _still_works(pool)


@pytest.mark.parametrize("directory", ["/tmp", "/dev/shm"])
async def test_files_cannot_be_written(pool: SandboxPool, directory: str) -> None:
    target = Path(directory) / f"sandbox-escape-{uuid.uuid4().hex}"

    assert await _attempt(pool, f"open({str(target)!r}, 'w').write('x')") == "EACCES"
    assert await _attempt(pool, f"os.mkdir({str(target)!r})") == "EACCES"
    assert not target.exists()
    await _still_works(pool)


@pytest.mark.parametrize(
    "action",
    [
        "socket.create_connection(('127.0.0.1', 9), timeout=1)",
        "socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)",
        "socket.socket(socket.AF_UNIX).connect('/run/anything.sock')",
        "socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)",
        "socket.socketpair()",
    ],
)
async def test_sockets_cannot_be_opened(pool: SandboxPool, action: str) -> None:
    assert await _attempt(pool, action) == "EPERM"
    await _still_works(pool)


@pytest.mark.parametrize(
    ("action", "refusal"),
    [
        ("os.fork()", "EPERM"),
        ("subprocess.run(['/bin/true'])", "EPERM"),
        ("os.execv('/bin/true', ['true'])", "EPERM"),
        ("os.posix_spawn('/bin/true', ['true'], {})", "EPERM"),
        (
            "threading.Thread(target=print).start()",
            "RuntimeError: can't start new thread",
        ),
    ],
)
async def test_no_process_or_thread_can_be_started(
    pool: SandboxPool, action: str, refusal: str
) -> None:
    assert await _attempt(pool, action) == refusal
    await _still_works(pool)


@pytest.mark.parametrize(
    "action",
    [
        "syscall_result(libc.ptrace(16, os.getppid(), 0, 0), 'ptrace')",  # PTRACE_ATTACH
        "open('/proc/%d/mem' % os.getppid(), 'rb').read(1)",
        "open('/proc/%d/environ' % os.getppid(), 'rb').read()",
    ],
)
async def test_the_zygote_cannot_be_inspected(pool: SandboxPool, action: str) -> None:
    assert await _attempt(pool, action) in {"EPERM", "EACCES"}
    await _still_works(pool)


@pytest.mark.parametrize(
    "action",
    [
        "os.kill(os.getppid(), signal.SIGKILL)",
        "os.kill(-1, signal.SIGKILL)",
        "os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)",
        "signal.pthread_kill(threading.main_thread().ident, signal.SIGKILL)",
    ],
)
async def test_nothing_can_be_signalled(pool: SandboxPool, action: str) -> None:
    zygote = pool.zygote_pid

    assert await _attempt(pool, action) == "EPERM"
    await _still_works(pool)
    assert pool.zygote_pid == zygote  # the same zygote: it was not killed


@pytest.mark.parametrize(
    "action",
    [
        "syscall_result(libc.unshare(0x10000000), 'unshare')",  # CLONE_NEWUSER
        "syscall_result(libc.unshare(0x00020000), 'unshare')",  # CLONE_NEWNS
        "syscall_result(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), 'mount')",
        "syscall_result(libc.chroot(b'/tmp'), 'chroot')",
        "resource.prlimit(os.getppid(), resource.RLIMIT_CPU, (1, 1))",
        "os.setuid(0)",
        "syscall_result(libc.prctl(4, 1, 0, 0, 0), 'prctl')",  # PR_SET_DUMPABLE
        "syscall_result(libc.prctl(1, 0, 0, 0, 0), 'prctl')",  # PR_SET_PDEATHSIG
    ],
)
async def test_privileged_operations_are_refused(pool: SandboxPool, action: str) -> None:
    assert await _attempt(pool, action) == "EPERM"
    await _still_works(pool)


@pytest.mark.parametrize(
    "action",
    [
        "syscall_result(libc.shmget(0, 4096, 0o1666), 'shmget')",  # IPC_PRIVATE, IPC_CREAT
        "syscall_result(libc.msgget(0x5AFE, 0o1666), 'msgget')",
        "syscall_result(libc.semget(0, 1, 0o1666), 'semget')",
        "syscall_result(libc.mq_open(b'/sandbox', 0o100 | 2, 0o666, None), 'mq_open')",
        "syscall_result(libc.inotify_init1(0), 'inotify_init1')",
    ],
)
async def test_no_channel_to_other_processes_can_be_opened(pool: SandboxPool, action: str) -> None:
    assert await _attempt(pool, action) == "EPERM"
    await _still_works(pool)


async def test_limits_cannot_be_changed_even_downwards(pool: SandboxPool) -> None:
    # Lowering one's own limit is always allowed by the kernel: this refusal is seccomp's
    # (Python reports EPERM from setrlimit as ValueError).
    refusal = await _attempt(pool, "resource.setrlimit(resource.RLIMIT_CPU, (1, 1))")

    assert refusal == "ValueError: not allowed to raise maximum limit"
    await _still_works(pool)


async def test_the_child_runs_limited_and_unprivileged(pool: SandboxPool) -> None:
    outcome = await _raw(
        pool,
        "names = ['RLIMIT_CPU', 'RLIMIT_AS', 'RLIMIT_NOFILE', 'RLIMIT_FSIZE', 'RLIMIT_CORE',"
        " 'RLIMIT_NPROC']\n"
        "result = {\n"
        "    'limits': {n: list(resource.getrlimit(getattr(resource, n))) for n in names},\n"
        "    'uids': list(os.getresuid()), 'gids': list(os.getresgid()),\n"
        "    'groups': os.getgroups(), 'session': os.getsid(0) == os.getpid(),\n"
        "}",
    )

    memory = 256 * 1024 * 1024
    assert outcome.result == {
        "limits": {
            "RLIMIT_CPU": [20, 21],
            "RLIMIT_AS": [memory, memory],
            "RLIMIT_NOFILE": [16, 16],
            "RLIMIT_FSIZE": [0, 0],
            "RLIMIT_CORE": [0, 0],
            "RLIMIT_NPROC": [0, 0],
        },
        "uids": [65534] * 3,
        "gids": [65534] * 3,
        "groups": [],
        "session": True,
    }
    await _still_works(pool)


async def test_a_child_sees_only_its_own_descriptors(pool: SandboxPool) -> None:
    outcome = await _raw(
        pool,
        "def is_open(fd):\n"
        "    try:\n"
        "        os.fstat(fd)\n"
        "    except OSError:\n"
        "        return False\n"
        "    return True\n"
        "result = [fd for fd in range(1024) if is_open(fd)]",
    )

    assert isinstance(outcome.result, list)
    assert outcome.result[:3] == [0, 1, 2]  # /dev/null
    assert len(outcome.result) == 4  # and the call socket
    await _still_works(pool)


# The filter for each architecture, run by a small classic-BPF interpreter: aarch64
# cannot be tried live here, and a wrong jump offset would open a hole silently.
_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_NUMBERS = {
    "x86_64": {"read": 0, "prlimit64": 302, "prctl": 157, "kill": 62, "clone3": 435},
    "aarch64": {"read": 63, "prlimit64": 261, "prctl": 167, "kill": 129, "clone3": 435},
}
_ALLOW, _EPERM, _KILL = 0x7FFF0000, 0x00050001, 0x80000000


def _run_filter(program: bytes, arch: int, nr: int, args: tuple[int, ...] = ()) -> int:
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(args + (0,) * (6 - len(args))))
    accumulator, pc = 0, 0
    while True:
        code, jt, jf, k = struct.unpack_from("=HBBI", program, pc * 8)
        pc += 1
        if code == 0x20:  # ld [k]
            accumulator = struct.unpack_from("<I", data, k)[0]
        elif code in (0x15, 0x35):  # jeq, jge
            taken = accumulator == k if code == 0x15 else accumulator >= k
            pc += jt if taken else jf
        elif code == 0x06:  # ret k
            return int(k)
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_seccomp_filter_decides_as_intended(machine: str) -> None:
    program = filter_program(machine)
    assert program is not None
    arch, numbers = _ARCH[machine], _NUMBERS[machine]
    table = {**(seccomp._X86_64 if machine == "x86_64" else seccomp._AARCH64), **seccomp._COMMON}

    def decide(name: str, *args: int) -> int:
        return _run_filter(program, arch, numbers.get(name, table.get(name, -1)), args)

    assert _run_filter(program, 0x40000003, 0) == _KILL  # i386 numbers mean other calls
    assert decide("read") == _ALLOW
    for name in seccomp.DENIED:
        if name in table:
            assert decide(name) == _EPERM, name
    assert decide("prlimit64", 0, 0, 0, 0x7FFC0000) == _ALLOW  # getrlimit
    assert decide("prlimit64", 0, 0, 0x7FFC0000) == _EPERM  # setrlimit
    assert decide("prlimit64", 0, 0, 0x1_0000_0000) == _EPERM
    assert decide("prlimit64", 4242, 0, 0, 0x7FFC0000) == _EPERM  # another process
    assert decide("prctl", 3) == _ALLOW  # PR_GET_DUMPABLE
    assert decide("prctl", 4, 1) == _EPERM  # PR_SET_DUMPABLE
    assert decide("prctl", 1, 0) == _EPERM  # PR_SET_PDEATHSIG
    if machine == "x86_64":
        assert _run_filter(program, arch, 0x40000000 | 41) == _EPERM  # x32 socket()


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_seccomp_filter_allows_every_other_syscall_number(machine: str) -> None:
    program = filter_program(machine)
    assert program is not None
    table = {**(seccomp._X86_64 if machine == "x86_64" else seccomp._AARCH64), **seccomp._COMMON}
    denied = {table[name] for name in seccomp.DENIED if name in table}

    for number in range(1024):
        expected = _EPERM if number in denied else _ALLOW  # prlimit64, prctl: zero args
        assert _run_filter(program, _ARCH[machine], number) == expected, number


def test_an_unknown_machine_gets_no_filter() -> None:
    assert filter_program("riscv64") is None
