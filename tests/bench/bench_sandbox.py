"""Cost of a code-tool call in the sandbox pool, against a fresh interpreter per call.

Pool (no service): a trivial tool run end to end (fork from the zygote, confinement,
compile and run under the policy, JSON answer), 500 runs after a warm-up, back to
back and paced (a short pause between calls, as calls arrive in a service). Baseline
in the same run: `python -c` per call. Targets: pool p50 <= 3 ms and >= 5x faster
than `python -c`. Also throughput at concurrency 4, the zygote's memory and one
child's, and the same latencies with and without pre-faulting (`sandbox.prefault`),
measured in interleaved rounds. Run with `python -m tests.bench` or
`python -m tests.bench.bench_sandbox`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import anyio

from sandbox import JsonValue, SandboxLimits, SandboxPool, SandboxRun
from tests.support.processes import children

SOURCE = "total = 0\nfor n in numbers:\n    total += n\nresult = {'total': total}\n"
NAMES: dict[str, JsonValue] = {"numbers": [1, 2, 3, 4]}
RUNS = 500
WARM_UP = 50
PAUSE = 0.005
BASELINE_RUNS = 50
THROUGHPUT_SECONDS = 5.0
CONCURRENCY = 4
COMPARE_ROUNDS = 4
P50_TARGET_MS = 3.0
RATIO_TARGET = 5.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _latencies(pool: SandboxPool, pause: float, runs: int = RUNS) -> list[float]:
    for _ in range(WARM_UP):
        await pool.run(SOURCE, NAMES, timeout=10)
    times: list[float] = []
    for _ in range(runs):
        if pause:
            await anyio.sleep(pause)
        start = time.perf_counter()
        outcome = await pool.run(SOURCE, NAMES, timeout=10)
        times.append(time.perf_counter() - start)
        assert outcome == SandboxRun({"total": 10}, ""), outcome
    return times


async def _throughput(pool: SandboxPool) -> float:
    done = 0
    end = time.perf_counter() + THROUGHPUT_SECONDS

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await pool.run(SOURCE, NAMES, timeout=10)
            done += 1

    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(CONCURRENCY):
            group.start_soon(worker)
    return done / (time.perf_counter() - start)


def _status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (kB) and private memory (kB) of a process."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    private = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            private += int(line.split()[1])
    fields["Private"] = private
    return fields


async def _memory(pool: SandboxPool) -> tuple[dict[str, int], dict[str, int]]:
    """The zygote's memory, and that of the child running a call (seen mid-call)."""
    zygote = pool.zygote_pid
    assert zygote is not None
    seen: dict[str, int] = {}

    async def look(request: dict[str, JsonValue]) -> dict[str, JsonValue]:
        for pid in children(zygote):
            try:
                found = _status(pid)
            except OSError:
                continue  # the child of an earlier call, gone meanwhile
            if found["VmHWM"] > seen.get("VmHWM", 0):
                seen.update(found)
        return {"ok": True, "status_code": 200, "headers": {}, "body": None}

    source = SOURCE + "http.get('https://x.test/')\n"
    outcome = await pool.run(source, NAMES, timeout=10, http=look)
    assert isinstance(outcome, SandboxRun), outcome
    assert seen, f"no child of the zygote {zygote} seen mid-call"
    return _status(zygote), seen


def _baseline() -> list[float]:
    times: list[float] = []
    for _ in range(BASELINE_RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "print(1)"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


async def _without_prefault(with_it: SandboxPool) -> list[str]:
    """Back to back and paced p50 with and without pre-faulting, in interleaved rounds."""
    times: dict[tuple[bool, float], list[float]] = {}
    async with SandboxPool(SandboxLimits(), max_concurrency=CONCURRENCY, prefault=False) as pool:
        for _ in range(COMPARE_ROUNDS):
            for prefaulting, subject in ((True, with_it), (False, pool)):
                for pause in (0.0, PAUSE):
                    runs = RUNS // COMPARE_ROUNDS
                    times.setdefault((prefaulting, pause), []).extend(
                        await _latencies(subject, pause, runs)
                    )
    lines = []
    for pause, label in ((0.0, "back to back"), (PAUSE, f"paced {PAUSE * 1000:g} ms")):
        with_p50 = _percentile(times[True, pause], 0.5) * 1000
        without_p50 = _percentile(times[False, pause], 0.5) * 1000
        lines.append(
            f"pre-faulting, {label}: p50 {with_p50:.2f} ms with it, {without_p50:.2f} ms without"
            f" ({with_p50 / without_p50:.2f}x), {COMPARE_ROUNDS} interleaved rounds"
        )
    return lines


async def _pool_figures() -> None:
    async with SandboxPool(SandboxLimits(), max_concurrency=CONCURRENCY) as pool:
        layers = pool.layers
        prefault_pages = pool.prefault_pages
        back_to_back = await _latencies(pool, 0.0)
        paced = await _latencies(pool, PAUSE)
        rate = await _throughput(pool)
        zygote, child = await _memory(pool)
        comparison = await _without_prefault(pool)
    baseline = statistics.median(_baseline()) * 1000
    for label, times in (("back to back", back_to_back), (f"paced {PAUSE * 1000:g} ms", paced)):
        p50, p95 = _percentile(times, 0.5) * 1000, _percentile(times, 0.95) * 1000
        verdict = "ok" if p50 <= P50_TARGET_MS and baseline / p50 >= RATIO_TARGET else "MISSED"
        print(
            f"pool run, {label}: p50 {p50:.2f} ms, p95 {p95:.2f} ms over {RUNS} runs; "
            f"x{baseline / p50:.1f} faster than python -c [{verdict}]"
        )
    print(f"baseline python -c: p50 {baseline:.2f} ms over {BASELINE_RUNS} runs")
    print(f"throughput at concurrency {CONCURRENCY}: {rate:.0f} calls/s")
    print(
        f"zygote: RSS {zygote['VmRSS'] / 1024:.1f} MiB (private {zygote['Private'] / 1024:.1f});"
        f" child mid-call: peak RSS {child['VmHWM'] / 1024:.1f} MiB,"
        f" private {child['Private'] / 1024:.1f} MiB (the rest is shared with the zygote)"
    )
    print("layers: " + ", ".join(f"{name}={value}" for name, value in layers.items()))
    print(f"pages each child copies as soon as it is forked (pre-faulting): {prefault_pages}")
    print("\n".join(comparison))


def main() -> None:
    """Print latency, throughput and memory figures of the sandbox pool."""
    anyio.run(_pool_figures)


if __name__ == "__main__":
    main()
