"""Pre-faulting: a child copies, in one system call, the pages a call is known to write.

After a fork, the first write to each page a child shares with the zygote copies
it, in a page fault; a call writes several hundred (reference counts, the
compiler's objects, interpreter caches), about 2.5 us each on the machines this
was measured on, most of it the kernel's copy-on-write work either way. So the
point is when: the zygote learns once which pages a call writes (`calibrate`: a
grandchild runs the warm-up workload, and the process between them reports which
of its pages became its own), and each child asks for all of them at once with
`process_madvise(MADV_POPULATE_WRITE)` as soon as it is forked. A spare child
does that while it waits for its job, so the call itself runs on copied pages.
That advice on the calling process itself needs Linux 6.13; elsewhere
`Pages.populate` returns False and the pages are copied when first written.

Only trusted code runs here: the calibration workload and the addresses are the
zygote's own, and a child pre-faults before it is confined (the seccomp filter
refuses `process_madvise` and `pidfd_open` to tool code).
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import struct
import time
from collections.abc import Callable

from sandbox import confine

__all__ = ["NO_PAGES", "Pages", "calibrate", "supported"]

_PAGE = os.sysconf("SC_PAGE_SIZE")
_PROCESS_MADVISE = ctypes.c_long(440)  # the same number on every architecture
_MADV_POPULATE_WRITE = 23
_PRESENT = 1 << 63
_EXCLUSIVE = 1 << 56  # mapped by this process only: for a page shared at fork, copied
_MAX_PAGES = 4096  # a calibration that reports more is not a typical call's set
_MAX_RANGES = 1024  # UIO_MAXIOV: the most one process_madvise call takes
_WORKLOAD_SECONDS = 10.0
_SETTLE_SECONDS = 0.02

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


class Pages:
    """Address ranges to pre-fault, ready for one `process_madvise` call."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        ranges = ranges[:_MAX_RANGES]
        self.ranges = tuple(ranges)
        self.count = sum(length for _, length in ranges) // _PAGE
        self._vector = (_Iovec * len(ranges))(*(_Iovec(start, size) for start, size in ranges))
        self._length = ctypes.c_size_t(len(ranges))
        self._advice = ctypes.c_int(_MADV_POPULATE_WRITE)
        self._flags = ctypes.c_uint(0)

    def populate(self) -> bool:
        """Copy every page now; False if the kernel refuses (then faults copy them later)."""
        if not self.ranges:
            return False
        pidfd = os.pidfd_open(os.getpid())
        try:
            done = _libc.syscall(
                _PROCESS_MADVISE, pidfd, self._vector, self._length, self._advice, self._flags
            )
        finally:
            os.close(pidfd)
        return bool(done >= 0)


NO_PAGES = Pages([])


def calibrate(
    workload: Callable[[tuple[int, ...]], None], *, timeout: float = _WORKLOAD_SECONDS
) -> Pages:
    """The pages a forked child writes while it runs `workload` (empty if unsupported).

    `workload` runs in a grandchild of this process and is given the descriptors it
    must keep open (it may close every other one). The child between them watches:
    it reads the grandchild's page map once the workload is done. Pages written by
    this process or by the watcher meanwhile stay shared with the third, so they do
    not look like the workload's. Call it in the zygote once its memory is settled:
    the addresses are this process's own. A workload that fails or takes longer
    than `timeout` seconds gives no pages.
    """
    if not supported():
        return NO_PAGES
    areas = _writable_areas()  # a child has the same mappings at the same addresses
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(reader)
            data = _packed(_watch(workload, areas, timeout))
            while data:
                data = data[os.write(writer, data) :]
            code = 0
        finally:
            os._exit(code)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or len(data) % 8:
        return NO_PAGES
    return Pages(_ranges(struct.unpack(f"={len(data) // 8}Q", data)))


def _watch(
    workload: Callable[[tuple[int, ...]], None], areas: list[tuple[int, int]], timeout: float
) -> list[int]:
    """In the watcher: run `workload` in a child and return the pages it made its own."""
    confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGKILL)
    time.sleep(_SETTLE_SECONDS)  # until the zygote sleeps in `read`: it writes nothing then
    go_read, go_write = os.pipe()
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_write)
            os.close(done_read)
            if os.read(go_read, 1) == b"g":  # its page map is open: go
                workload((go_read, done_write))
                os.write(done_write, b"d")
                os.read(go_read, 1)  # stay until it is read (end of file then)
        finally:
            os._exit(0)
    os.close(go_read)
    os.close(done_write)
    try:
        # Opened before the child confines itself: the access check is made here.
        pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
        try:
            os.write(go_write, b"g")
            ready = select.select([done_read], [], [], timeout)[0]
            if not ready or os.read(done_read, 1) != b"d":
                return []
            return [page for page, flags in _pages(pagemap, areas) if flags & _EXCLUSIVE]
        finally:
            os.close(pagemap)
    finally:
        os.kill(pid, signal.SIGKILL)  # done, or stuck in the workload
        os.waitpid(pid, 0)


def _packed(pages: list[int]) -> bytes:
    return struct.pack(f"={len(pages[:_MAX_PAGES])}Q", *pages[:_MAX_PAGES])


def _writable_areas() -> list[tuple[int, int]]:
    """The private writable mappings of this process (heap, arenas, data, stack)."""
    areas = []
    with open("/proc/self/maps", encoding="ascii") as maps:
        for line in maps:
            fields = line.split()
            if fields[1].startswith("rw") and fields[1].endswith("p"):
                start, end = (int(value, 16) for value in fields[0].split("-"))
                areas.append((start, end))
    return areas


def _pages(pagemap: int, areas: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(address, pagemap flags) of every present page in `areas`."""
    found = []
    for start, end in areas:
        count = (end - start) // _PAGE
        data = os.pread(pagemap, count * 8, start // _PAGE * 8)
        for index, (entry,) in enumerate(struct.iter_unpack("=Q", data)):
            if entry & _PRESENT:
                found.append((start + index * _PAGE, entry))
    return found


def _ranges(pages: tuple[int, ...]) -> list[tuple[int, int]]:
    """Sorted page addresses merged into (start, length) runs."""
    ranges: list[list[int]] = []
    for page in sorted(pages):
        if ranges and ranges[-1][0] + ranges[-1][1] == page:
            ranges[-1][1] += _PAGE
        else:
            ranges.append([page, _PAGE])
    return [(start, length) for start, length in ranges]


def supported() -> bool:
    """Whether `process_madvise` takes MADV_POPULATE_WRITE for this very process."""
    page = ctypes.create_string_buffer(_PAGE)  # written already: populating it is a no-op
    start = ctypes.addressof(page) // _PAGE * _PAGE
    return Pages([(start, _PAGE)]).populate()
