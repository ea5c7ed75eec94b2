"""Identifiers for calls and requests: ULID text, cheap enough for every request.

Every request makes two. `os.urandom` (a system call), the `ulid` package and
`base64.b32encode` (a Python loop) each cost more than the whole request edge
under load, so the encoding is a table lookup per 10 bits. These ids must be unique
and time-ordered, not unguessable, so a seeded PRNG serves.
"""

from __future__ import annotations

import random
import time

__all__ = ["new_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two base32 digits for each 10-bit value; 13 of them write a 130-bit ULID.
_PAIRS = [first + second for first in _CROCKFORD for second in _CROCKFORD]
_SHIFTS = tuple(range(120, -1, -10))


def new_id(prefix: str) -> str:
    """`<prefix>_` and a new ULID: 48 bits of milliseconds, 80 random bits."""
    value = (time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)
    return prefix + "_" + "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])
