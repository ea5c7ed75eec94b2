"""The service's `CodeRunner`: the tool contract's view of the sandbox pool."""

from __future__ import annotations

from sandbox import SandboxBusy, SandboxFailure, SandboxPool
from tools.base import CodeOutcome, JsonValue, OutboundCall

__all__ = ["SandboxCodeRunner"]


class SandboxCodeRunner:
    """Runs and compiles code tools in the sandbox pool."""

    def __init__(self, pool: SandboxPool) -> None:
        self._pool = pool

    async def check(self, source: str) -> CodeOutcome:
        """Compile `source` in a confined child."""
        try:
            failure = await self._pool.check(source)
        except SandboxBusy as exc:
            return _busy(exc)
        return CodeOutcome() if failure is None else _failed(failure)

    async def run(
        self,
        source: str,
        names: dict[str, JsonValue],
        *,
        time_limit: float,
        http: OutboundCall | None,
    ) -> CodeOutcome:
        """Run `source` in a confined child; `busy` when its queue is full."""
        try:
            outcome = await self._pool.run(source, names, timeout=time_limit, http=http)
        except SandboxBusy as exc:
            return _busy(exc)
        if isinstance(outcome, SandboxFailure):
            return _failed(outcome)
        return CodeOutcome(result=outcome.result, stdout=outcome.stdout)


def _failed(failure: SandboxFailure) -> CodeOutcome:
    return CodeOutcome(failure=failure.kind, message=failure.message, message_cut=failure.cut)


def _busy(exc: SandboxBusy) -> CodeOutcome:
    return CodeOutcome(failure="busy", message=f"{exc}; try again shortly")
