"""Assertions that a secret, and its common encodings, never appear in some output."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

__all__ = ["assert_no_secret", "secret_forms"]


def secret_forms(secret: str) -> dict[str, str]:
    """The secret as it would leak: raw, JSON-escaped, URL-quoted, base64."""
    raw = secret.encode()
    return {
        "raw": secret,
        "json": json.dumps(secret)[1:-1],
        "url": quote(secret, safe=""),
        "url_plus": quote_plus(secret),
        "base64": base64.b64encode(raw).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


def assert_no_secret(text: str, *secrets: str, where: str = "output") -> None:
    """Fail naming the form and the place when any form of any secret is in `text`."""
    for secret in secrets:
        for form, needle in secret_forms(secret).items():
            assert needle not in text, f"the {form} form of a secret appears in the {where}"
