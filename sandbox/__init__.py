"""The restricted Python runner: a RestrictedPython policy in confined processes.

Standalone: it imports nothing from `sidecar` or `tools`. The service uses
`SandboxPool`; `sandbox.policy` runs inside the children. The pool's names are
loaded on first use, so the zygote (`python -m sandbox.zygote`) does not import
the event-loop machinery it never runs: every page it holds is copied per fork.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.framing import JsonValue
    from sandbox.outcomes import (
        FAILURE_KINDS,
        HttpHandler,
        RawRun,
        SandboxBusy,
        SandboxError,
        SandboxFailure,
        SandboxLimits,
        SandboxRun,
        SandboxUnavailable,
    )
    from sandbox.pool import SandboxPool

__all__ = [
    "FAILURE_KINDS",
    "HttpHandler",
    "JsonValue",
    "RawRun",
    "SandboxBusy",
    "SandboxError",
    "SandboxFailure",
    "SandboxLimits",
    "SandboxPool",
    "SandboxRun",
    "SandboxUnavailable",
]


def __getattr__(name: str) -> object:
    if name == "JsonValue":
        return importlib.import_module("sandbox.framing").JsonValue
    if name == "SandboxPool":
        return importlib.import_module("sandbox.pool").SandboxPool
    if name in __all__:
        return getattr(importlib.import_module("sandbox.outcomes"), name)
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
