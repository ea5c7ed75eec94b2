"""The process table as /proc shows it, to find a test's children and leftovers."""

from __future__ import annotations

from pathlib import Path

__all__ = ["children", "processes"]


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process, from /proc."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        found[int(entry.name)] = (int(fields[1]), fields[0])
    return found


def children(parent: int) -> set[int]:
    """The child processes of `parent`, zombies included."""
    return {pid for pid, (ppid, _) in processes().items() if ppid == parent}
