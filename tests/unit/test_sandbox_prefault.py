"""Pre-faulting: calibration finds the pages a forked child writes; populating copies them."""

from __future__ import annotations

import ctypes
import mmap
import os
import resource
import struct
import time
from collections.abc import Callable, Iterator

import pytest

from sandbox import RawRun, SandboxLimits, SandboxPool, SandboxRun, prefault
from sandbox.prefault import Pages, calibrate
from tests.support.processes import children

PAGE = mmap.PAGESIZE
PAGES = 32


needs_populate = pytest.mark.skipif(
    not prefault.supported(),
    reason="this kernel refuses process_madvise(MADV_POPULATE_WRITE) on the calling process",
)


@pytest.fixture
def buffers() -> Iterator[tuple[mmap.mmap, mmap.mmap]]:
    """Two private anonymous areas of 32 pages, every page already written here."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    written, untouched = mmap.mmap(-1, PAGES * PAGE, flags), mmap.mmap(-1, PAGES * PAGE, flags)
    for area in (written, untouched):
        for page in range(PAGES):
            area[page * PAGE] = 1
    yield written, untouched
    written.close()
    untouched.close()


def _address(area: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(area))


def _write_every_page(area: mmap.mmap) -> Callable[[tuple[int, ...]], None]:
    def workload(keep: tuple[int, ...]) -> None:
        for page in range(PAGES):
            area[page * PAGE] = 2

    return workload


def _covered(pages: Pages, start: int) -> int:
    """How many of the 32 pages from `start` the ranges cover."""
    return sum(
        any(first <= start + page * PAGE < first + length for first, length in pages.ranges)
        for page in range(PAGES)
    )


@needs_populate
def test_calibration_reports_the_pages_the_workload_wrote_and_no_others(
    buffers: tuple[mmap.mmap, mmap.mmap],
) -> None:
    written, untouched = buffers
    pages = calibrate(_write_every_page(written))
    assert _covered(pages, _address(written)) == PAGES
    assert _covered(pages, _address(untouched)) == 0
    # Adjacent pages travel as one range, not one each.
    assert len(pages.ranges) < pages.count


def _faults_writing(area: mmap.mmap, pages: Pages | None) -> int:
    """Minor faults a forked child takes writing every page (after populating `pages`)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if pages is not None and not pages.populate():
                os.write(writer, struct.pack("=q", -1))
                os._exit(0)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for page in range(PAGES):
                area[page * PAGE] = 3
            after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            os.write(writer, struct.pack("=q", after - before))
        finally:
            os._exit(0)
    os.close(writer)
    data = os.read(reader, 8)
    os.close(reader)
    os.waitpid(pid, 0)
    return int(struct.unpack("=q", data)[0])


@needs_populate
def test_a_child_that_populates_writes_those_pages_without_faulting(
    buffers: tuple[mmap.mmap, mmap.mmap],
) -> None:
    written, _ = buffers
    pages = calibrate(_write_every_page(written))
    control = _faults_writing(written, None)  # one copy-on-write each, and a few of Python's
    populated = _faults_writing(written, pages)
    assert control >= PAGES
    assert 0 <= populated <= control - PAGES + 4


def _failing(keep: tuple[int, ...]) -> None:
    raise RuntimeError("the workload failed")


def _stuck(keep: tuple[int, ...]) -> None:
    time.sleep(60)


@needs_populate
@pytest.mark.parametrize("workload", [_failing, _stuck], ids=["failing", "stuck"])
def test_a_workload_that_fails_or_hangs_gives_no_pages_and_leaves_no_process(
    workload: Callable[[tuple[int, ...]], None],
) -> None:
    before = children(os.getpid())
    started = time.monotonic()
    pages = calibrate(workload, timeout=0.5)
    assert pages.count == 0
    assert pages.populate() is False  # nothing to copy: the child goes on as before
    assert time.monotonic() - started < 10
    # The watcher it forked is reaped (and took its own child along).
    assert children(os.getpid()) <= before


@needs_populate
@pytest.mark.anyio
async def test_the_zygote_calibrates_and_each_child_copies_those_pages_first() -> None:
    async with SandboxPool(
        SandboxLimits(), max_concurrency=2, allow_raw_python_for_tests=True
    ) as pool:
        assert pool.prefault_pages > 50
        assert all(pool.layers.values()), pool.layers
        # Populating counts as faults: a child has taken at least that many on arrival.
        seen = await pool.run_raw_python_for_tests(
            "import resource\nresult = resource.getrusage(resource.RUSAGE_SELF).ru_minflt",
            timeout=10,
        )
        assert isinstance(seen, RawRun), seen
        assert isinstance(seen.result, int)
        assert seen.result >= pool.prefault_pages
        outcome = await pool.run("result = sum(numbers)", {"numbers": [1, 2, 3]}, timeout=10)
    assert outcome == SandboxRun(6, "")


@pytest.mark.anyio
async def test_a_pool_without_prefaulting_copies_nothing_up_front_and_still_answers() -> None:
    async with SandboxPool(SandboxLimits(), max_concurrency=1, prefault=False) as pool:
        assert pool.prefault_pages == 0
        outcome = await pool.run("result = sum(numbers)", {"numbers": [1, 2, 3]}, timeout=10)
    assert outcome == SandboxRun(6, "")
