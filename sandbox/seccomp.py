"""A classic-BPF seccomp filter, written by hand (no libseccomp binding here).

The filter checks the architecture first (a foreign one kills the process: its
syscall numbers mean other calls), then refuses with EPERM every system call a
tool has no business making, so Python raises a clear `PermissionError`. The
rest is allowed: the filter closes doors, the other layers bound the rest. The
decision is a binary search over runs of syscall numbers, not a list of them.
"""

from __future__ import annotations

import platform
import struct

__all__ = ["DENIED", "filter_program"]

# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_EPERM = 1
_X32_BIT = 0x40000000

# seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little-endian here).
_NR = 0
_ARCH = 4
_ARG0_LOW = 16
_ARG2_LOW = 32
_ARG2_HIGH = 36

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4

_ARCHES = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

DENIED = (
    # new processes and threads, other programs
    "clone", "clone3", "fork", "vfork", "execve", "execveat",
    # other processes: debugging, memory, signals, priorities
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp",
    "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "setpriority", "sched_setparam", "sched_setscheduler", "sched_setattr",
    "sched_setaffinity", "ioprio_set", "move_pages", "migrate_pages", "setrlimit",
    # network (the call socket already exists), and talking to other processes
    "socket", "socketpair", "shmget", "shmat", "shmctl", "shmdt", "semget", "semop",
    "semctl", "semtimedop", "msgget", "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink",
    "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    # namespaces, mounts, the file-system root
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree",
    "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "name_to_handle_at", "open_by_handle_at", "mknod", "mknodat",
    # watching files: Landlock does not cover it
    "inotify_init", "inotify_init1", "inotify_add_watch", "fanotify_init", "fanotify_mark",
    # kernel facilities with a history of holes
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "personality",
    # the machine itself
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "settimeofday", "syslog",
    "iopl", "ioperm", "vhangup", "uselib",
)  # fmt: skip

_X86_64 = {
    "socket": 41, "socketpair": 53, "clone": 56, "fork": 57, "vfork": 58, "execve": 59,
    "kill": 62, "ptrace": 101, "syslog": 103, "rt_sigqueueinfo": 129, "mknod": 133,
    "uselib": 134, "personality": 135, "setpriority": 141, "sched_setparam": 142,
    "sched_setscheduler": 144, "vhangup": 153, "pivot_root": 155, "setrlimit": 160,
    "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166,
    "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "quotactl": 179, "tkill": 200,
    "sched_setaffinity": 203, "tgkill": 234, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "ioprio_set": 251, "migrate_pages": 256,
    "mknodat": 259, "unshare": 272, "move_pages": 279, "rt_tgsigqueueinfo": 297,
    "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "finit_module": 313, "sched_setattr": 314, "kexec_file_load": 320, "bpf": 321,
    "execveat": 322, "userfaultfd": 323, "prlimit64": 302, "prctl": 157, "shmget": 29,
    "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65, "semctl": 66,
    "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71,
    "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243,
    "mq_notify": 244, "mq_getsetattr": 245, "inotify_init": 253, "inotify_add_watch": 254,
    "inotify_init1": 294, "fanotify_init": 300, "fanotify_mark": 301,
}  # fmt: skip

_AARCH64 = {
    "ioprio_set": 30, "mknodat": 33, "umount2": 39, "mount": 40, "pivot_root": 41,
    "chroot": 51, "vhangup": 58, "quotactl": 60, "acct": 89, "personality": 92,
    "unshare": 97, "kexec_load": 104, "init_module": 105, "delete_module": 106,
    "syslog": 116, "ptrace": 117, "sched_setparam": 118, "sched_setscheduler": 119,
    "sched_setaffinity": 122, "kill": 129, "tkill": 130, "tgkill": 131,
    "rt_sigqueueinfo": 138, "setpriority": 140, "reboot": 142, "setrlimit": 164,
    "settimeofday": 170, "socket": 198, "socketpair": 199, "add_key": 217,
    "request_key": 218, "keyctl": 219, "clone": 220, "execve": 221, "swapon": 224,
    "swapoff": 225, "migrate_pages": 238, "move_pages": 239, "rt_tgsigqueueinfo": 240,
    "perf_event_open": 241, "name_to_handle_at": 264, "open_by_handle_at": 265,
    "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
    "finit_module": 273, "sched_setattr": 274, "bpf": 280, "execveat": 281,
    "userfaultfd": 282, "kexec_file_load": 294, "prlimit64": 261, "prctl": 167,
    "mq_open": 180, "mq_unlink": 181, "mq_timedsend": 182, "mq_timedreceive": 183,
    "mq_notify": 184, "mq_getsetattr": 185, "msgget": 186, "msgctl": 187, "msgrcv": 188,
    "msgsnd": 189, "semget": 190, "semctl": 191, "semtimedop": 192, "semop": 193,
    "shmget": 194, "shmctl": 195, "shmat": 196, "shmdt": 197, "inotify_init1": 26,
    "inotify_add_watch": 27, "fanotify_init": 262, "fanotify_mark": 263,
}  # fmt: skip

# Numbered alike on every architecture since Linux 5.1.
_COMMON = {
    "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_open": 434, "clone3": 435,
    "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442,
}  # fmt: skip


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def filter_program(machine: str | None = None) -> bytes | None:
    """The filter for this machine as `struct sock_filter[]` bytes; `None` if unknown."""
    machine = machine or platform.machine()
    arch = _ARCHES.get(machine)
    if arch is None:
        return None
    table = {**(_X86_64 if machine == "x86_64" else _AARCH64), **_COMMON}
    program = [
        _insn(_LD_W_ABS, _ARCH),
        _insn(_JEQ_K, arch, jt=1),
        _insn(_RET_K, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, _NR),
    ]
    if machine == "x86_64":
        # x32 numbers carry this bit and would slip past every comparison below.
        program += [_insn(_JGE_K, _X32_BIT, jf=1), _DENY]
    # fork, vfork, mknod, iopl... exist only on x86_64.
    decisions = {table[name]: "deny" for name in DENIED if name in table}
    decisions[table["prlimit64"]] = "prlimit64"
    decisions[table["prctl"]] = "prctl"
    program += _search(_runs(decisions))
    return b"".join(program)


_DENY = _insn(_RET_K, _RET_ERRNO | _EPERM)
_ALLOW = _insn(_RET_K, _RET_ALLOW)
_LEAVES = {
    "allow": (_ALLOW,),
    "deny": (_DENY,),
    # prlimit64 only on oneself and only to read: getrlimit goes through it, and a
    # sibling running as the same uid must not have its limits changed.
    "prlimit64": (
        _insn(_LD_W_ABS, _ARG0_LOW),  # pid_t: the kernel reads the low 32 bits
        _insn(_JEQ_K, 0, jf=4),
        _insn(_LD_W_ABS, _ARG2_LOW),
        _insn(_JEQ_K, 0, jf=2),
        _insn(_LD_W_ABS, _ARG2_HIGH),
        _insn(_JEQ_K, 0, jt=1),
        _DENY,
        _ALLOW,
    ),
    # prctl may read, not undo the death signal or make the process dumpable again.
    "prctl": (
        _insn(_LD_W_ABS, _ARG0_LOW),
        _insn(_JEQ_K, _PR_SET_PDEATHSIG, jt=1),
        _insn(_JEQ_K, _PR_SET_DUMPABLE, jf=1),
        _DENY,
        _ALLOW,
    ),
}
_MAX_JUMP = 255  # jt and jf are one byte


def _runs(decisions: dict[int, str]) -> list[tuple[int, str]]:
    """Every syscall number in runs of one decision, as (first number, decision)."""
    cuts = [(0, "allow")]  # a number without a decision is allowed
    for number in sorted(decisions):
        cuts += [(number, decisions[number]), (number + 1, "allow")]
    runs: list[tuple[int, str]] = []
    for first, decision in cuts:
        if runs and runs[-1][0] == first:
            runs.pop()  # an empty run
        if runs and runs[-1][1] == decision and decision in ("allow", "deny"):
            continue  # the same decision goes on
        runs.append((first, decision))
    return runs


def _search(runs: list[tuple[int, str]]) -> list[bytes]:
    """A binary search over the runs, with the syscall number in the accumulator.

    A few comparisons decide each call. The kernel also runs the filter once per
    syscall number when it is installed (to cache which are always allowed): on a
    linear list of comparisons that took about 0.2 ms per child.
    """
    if len(runs) == 1:
        return list(_LEAVES[runs[0][1]])
    middle = len(runs) // 2
    below, above = _search(runs[:middle]), _search(runs[middle:])
    if len(below) > _MAX_JUMP:
        raise ValueError("the seccomp filter is too large for one-byte jumps")
    return [_insn(_JGE_K, runs[middle][0], jt=len(below)), *below, *above]
