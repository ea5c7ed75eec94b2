"""Identifiers for calls and requests, cheap enough for every request.

Every request makes two, and under load anything per request costs several times
its idle price: a ULID per request (a clock read, random bits, base32) cost more
than the rest of the HTTP edge. These ids must be unique, not unguessable: a random
per-process prefix (ULID text, so ids from different replicas and restarts do not
meet) followed by a counter.
"""

from __future__ import annotations

import itertools

from ulid import ULID

__all__ = ["new_id"]

_PROCESS = str(ULID())[:16]
_COUNTER = itertools.count(1)


def new_id(prefix: str) -> str:
    """`<prefix>_` and 26 ULID-alphabet characters: the process prefix, then a counter."""
    return f"{prefix}_{_PROCESS}{next(_COUNTER):010X}"
