"""Pages of a list kept in two places: manifest entries (in memory) and the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

__all__ = ["merged_page"]


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=_HasId)


def merged_page(
    stored: Sequence[T],
    stored_has_more: bool,
    manifests: Sequence[T],
    *,
    limit: int,
    after: str | None,
    before: str | None,
) -> tuple[list[T], bool]:
    """Newest first (ULID ids), the store's page and the manifest entries merged.

    Before a cursor the page is the `limit` entries closest to it: the oldest of those newer.
    """
    shown = [
        entry
        for entry in manifests
        if (after is None or entry.id < after) and (before is None or entry.id > before)
    ]
    merged = sorted([*stored, *shown], key=lambda entry: entry.id, reverse=True)
    chosen = merged[-limit:] if before is not None else merged[:limit]
    return chosen, stored_has_more or len(merged) > limit
