"""Assertions that a secret, and its common encodings, never appear in some output."""

from __future__ import annotations

import base64
import json
import random
import string
from urllib.parse import quote, quote_plus

__all__ = ["PIECE", "assert_no_piece", "assert_no_secret", "random_secret", "secret_forms"]

# The length of a piece of a secret that must never leave: shorter pieces of a random
# secret turn up in ordinary text by chance.
PIECE = 8
_HIGH_ENTROPY = string.ascii_letters + string.digits + "-_"


def secret_forms(secret: str) -> dict[str, str]:
    """The secret as it would leak: raw, JSON-escaped, URL-quoted, base64 (both alphabets).

    For base64 only the characters made of the secret's own bits count: the last
    one or two also carry the bits of whatever follows it.
    """
    raw = secret.encode()
    core = base64.b64encode(raw).decode()[: 8 * len(raw) // 6]
    return {
        "raw": secret,
        "json": json.dumps(secret)[1:-1],
        "url": quote(secret, safe=""),
        "url_plus": quote_plus(secret),
        "base64": core,
        "base64url": core.replace("+", "-").replace("/", "_"),
    }


def assert_no_secret(text: str, *secrets: str, where: str = "output") -> None:
    """Fail naming the form and the place when any form of any secret is in `text`."""
    for secret in secrets:
        for form, needle in secret_forms(secret).items():
            assert needle not in text, f"the {form} form of a secret appears in the {where}"


def random_secret(rng: random.Random, length: int = 32) -> str:
    """A high-entropy secret such as an API key (letters, digits, `-` and `_`)."""
    return "".join(rng.choices(_HIGH_ENTROPY, k=length))


def assert_no_piece(text: str, secret: str, *, where: str = "output") -> None:
    """Fail when `text` holds any `PIECE`-character piece of `secret` (or all of a shorter one)."""
    size = min(PIECE, len(secret))
    for start in range(len(secret) - size + 1):
        piece = secret[start : start + size]
        assert piece not in text, (
            f"characters {start}-{start + size} of a secret are in the {where}"
        )
