"""A trivial code tool through the executor, against the sandbox pool alone (same run).

The executor adds resolving, argument validation, the deadline guard, redaction and
the outcome to what the pool does; both run the same one-line code, sequentially.
Run with `python -m tests.bench` or `python -m tests.bench.bench_code_tool`.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import anyio

from sandbox import SandboxPool
from sidecar.execution import Completed, ToolCall
from sidecar.logs import configure_logging
from sidecar.registry.references import parse_reference
from sidecar.services import open_services
from sidecar.settings import Settings
from tests.bench.timing import timed

CALLS = 400
WARMUP = 40
CODE = "result = n + 1"
TOOL = {"type": "code", "key": "trivial", "code_tool": {"code": CODE}}


def describe(name: str, spent: list[float]) -> str:
    """p50 and p95 of a list of milliseconds."""
    p95 = statistics.quantiles(spent, n=20)[18]
    return (
        f"  {name:<34} p50 {statistics.median(spent):6.2f} ms  p95 {p95:6.2f} ms  (n={len(spent)})"
    )


async def measure() -> None:
    configure_logging("warning", "json")
    async with SandboxPool() as pool:

        async def alone() -> None:
            await pool.run(CODE, {"n": 1}, timeout=5)

        baseline = await timed(alone, CALLS, warm_up=WARMUP)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(state_dir=Path(tmp), manifests_dir=Path(tmp), log_level="warning")
        async with open_services(settings) as services:
            call = ToolCall(reference=parse_reference(TOOL), arguments={"n": 1})
            outcome = (await services.executor.execute(call)).outcome
            assert isinstance(outcome, Completed), outcome

            async def through_executor() -> None:
                await services.executor.execute(call)

            measured = await timed(through_executor, CALLS, warm_up=WARMUP)
    print(describe("sandbox pool alone (baseline)", baseline))
    print(describe("code tool through the executor", measured))
    overhead = statistics.median(measured) - statistics.median(baseline)
    print(f"executor overhead p50: {overhead:+.2f} ms")


def main() -> None:
    """Print p50/p95 of both and the executor's overhead."""
    print(f"{WARMUP} warm-up + {CALLS} sequential calls each; code: {CODE!r}")
    anyio.run(measure, backend_options={"use_uvloop": True})


if __name__ == "__main__":
    main()
