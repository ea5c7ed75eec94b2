"""Short profiles for the benchmarks: where the time of a missed target goes."""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

__all__ = ["print_top", "profile_calls"]

ROOT = Path(__file__).resolve().parents[2]
OWN_CODE = (str(ROOT / "sidecar") + "/", str(ROOT / "tools") + "/")


async def profile_calls(
    call: Callable[[], Awaitable[object]], count: int, *, seconds: float = 10.0
) -> tuple[cProfile.Profile, int]:
    """Profile up to `count` sequential awaits of `call` (at most `seconds`); the number run."""
    profile = cProfile.Profile()
    deadline = time.perf_counter() + seconds
    done = 0
    profile.enable()
    try:
        while done < count and time.perf_counter() < deadline:
            await call()
            done += 1
    finally:
        profile.disable()
    return profile, done


def print_top(profile: cProfile.Profile, calls: int, limit: int = 10) -> None:
    """Per call: the `limit` sidecar/ and tools/ entries with the most cumulative time, and
    each package's share of the time spent in its own functions."""
    table = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    rows = [
        (file, line, name, primitive, own, cumulative)
        for (file, line, name), (primitive, _, own, cumulative, _) in table.items()
    ]
    total = sum(row[4] for row in rows)
    print(f"  {calls} calls; cProfile inflates times, compare shares; a coroutine resume counts")
    print(f"  top {limit} cumulative in sidecar/ and tools/:   us/call  share  calls/call")
    mine = sorted((row for row in rows if row[0].startswith(OWN_CODE)), key=lambda r: -r[5])
    for file, line, name, primitive, _, cumulative in mine[:limit]:
        where = f"{Path(file).relative_to(ROOT)}:{line}({name})"
        print(
            f"    {where:<44} {cumulative / calls * 1e6:7.1f}  {cumulative / total:5.0%}"
            f"  {primitive / calls:5.1f}"
        )
    shares: dict[str, float] = {}
    for file, _, _, _, own, _ in rows:
        shares[_package(file)] = shares.get(_package(file), 0.0) + own
    ranked = sorted(shares.items(), key=lambda item: -item[1])[:limit]
    print("  own time by package: " + ", ".join(f"{name} {t / total:.0%}" for name, t in ranked))


def _package(file: str) -> str:
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if file.startswith(OWN_CODE):
        return Path(file).relative_to(ROOT).parts[0]
    if "python3.11/" in file:
        return "stdlib " + file.split("python3.11/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if file.startswith("<frozen "):
        return "stdlib " + file.removeprefix("<frozen ").split(".", 1)[0].rstrip(">")
    return "C builtins" if file == "~" else file
