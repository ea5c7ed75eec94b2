"""Run every `tests/bench/bench_*.py` benchmark: `python -m tests.bench`."""

from __future__ import annotations

import importlib
import pkgutil

import tests.bench


def main() -> None:
    """Import each `bench_*` module of this package and call its `main()`."""
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(tests.bench.__path__)
        if info.name.startswith("bench_")
    )
    for name in names:
        print(f"=== {name} ===", flush=True)
        importlib.import_module(f"tests.bench.{name}").main()
        print(flush=True)


if __name__ == "__main__":
    main()
