"""The load suite's throughput at concurrency 64: the mixed calls of
`tests/e2e/test_load.py` (platform, HTTP, code, MCP, a one-turn and a streamed model
answer, a secret each) against the cheapest kind alone, in the same run, each through
a real `sidecar serve` with its peers on loopback (the load and the peers share the
machine's two cores with the service).
Run with `python -m tests.bench` or `python -m tests.bench.bench_load`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.bench.peers import ROOT

CALLS = 3000


def run(kinds: str) -> tuple[float, str]:
    """Calls per second of one load run, and its printed summary."""
    env = {**os.environ, "SIDECAR_LOAD_CALLS": str(CALLS), "SIDECAR_LOAD_KINDS": kinds}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "tests/e2e/test_load.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith(("load:", "  "))]
    found = re.search(r"\(([\d.]+) calls/s\)", done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"the load run failed:\n{done.stdout[-3000:]}")
    summary = "\n".join(line for line in lines if "RSS each second" not in line)
    return float(found.group(1)), summary


def main() -> None:
    baseline, baseline_summary = run("platform")
    mixed, mixed_summary = run("platform,http,code,mcp,model,stream")
    print(f"baseline, `current_date` alone:\n{baseline_summary}")
    print(f"the mix:\n{mixed_summary}")
    print(
        f"mixed / current_date alone: x{mixed / baseline:.2f}"
        f" ({mixed:.0f} vs {baseline:.0f} calls/s)"
    )


if __name__ == "__main__":
    main()
