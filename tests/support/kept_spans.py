"""An exporter that keeps the spans it is given, as they are: for the tests and the
benches that look at what the service recorded without a collector."""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.tracing import Span

__all__ = ["KeptSpans"]


class KeptSpans:
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.shut = False

    @staticmethod
    def encode(span: Span) -> Span:
        return span

    async def export(self, spans: Sequence[Span], deadline: float) -> None:
        self.spans.extend(spans)

    def stop_retrying(self) -> None:
        pass

    async def aclose(self) -> None:
        self.shut = True

    def named(self) -> dict[str, Span]:
        return {span.name: span for span in self.spans}
