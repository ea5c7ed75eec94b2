"""Shortening text that may hold secrets: the whole text is redacted, then cut.

Each test places random high-entropy secrets (and their encoded forms) at every
offset across a cut point and checks that no output holds the secret or any
8-character piece of it.
"""

from __future__ import annotations

import base64
import json
import random
import shlex
from collections.abc import Callable
from urllib.parse import quote

import pytest

from sidecar.redaction import MASK, Redactor
from tests.support.secrets import assert_no_piece, random_secret
from tools.base import NO_SECRETS, shorten

RNG = random.Random(20261202)
SECRETS = [random_secret(RNG, length) for length in (9, 32, 71)]
# Multi-byte characters (a cut can run through one) and quotes (entity and shell forms).
SPECIAL = "pä'ss-\"wörd€-" + random_secret(RNG, 12)
FILLER = " ."  # neither begins a secret, so only a secret can make the tail masked

FORMS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "json": lambda s: json.dumps(s)[1:-1],
    "url": lambda s: quote(s, safe=""),
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "xml": lambda s: s.replace("&", "&amp;").replace("'", "&#x27;").replace('"', "&quot;"),
    "shell": lambda s: shlex.quote(s),
}


def filler(length: int) -> str:
    return (FILLER * (length // 2 + 1))[:length]


def utf8_size(text: str) -> int:
    return len(text.encode())


def json_size(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode())


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
@pytest.mark.parametrize("secret", [*SECRETS, SPECIAL], ids=["short", "medium", "long", "special"])
def test_a_cut_never_leaves_a_piece_of_a_secret_placed_across_it(
    secret: str, form: Callable[[str], str]
) -> None:
    redactor = Redactor([secret, random_secret(RNG)])
    leaked = form(secret)
    for limit in (40, 120):
        for offset in range(max(limit - len(leaked) - 4, 0), limit + 4):
            text = filler(offset) + leaked + filler(30)
            for marker in ("", "..."):
                for size in (len, utf8_size, json_size):
                    cut = redactor.cut(text, limit, size=size, marker=marker)
                    assert size(cut) <= limit
                    assert_no_piece(cut, secret)
                    assert cut.endswith(marker) or cut == redactor.redact(text)


def test_a_cut_keeps_the_redacted_text_up_to_the_limit() -> None:
    secret = SECRETS[1]
    redactor = Redactor([secret])
    text = f"error: {secret} was refused by {secret}; " + "detail " * 20

    redacted = redactor.redact(text)
    assert redactor.cut(text, 1_000) == redacted
    assert redactor.cut(text, 30, marker="...") == redacted[:27] + "..."
    assert redactor.cut(text, 8) == f"error: {MASK[0]}"


def test_a_text_that_fits_is_only_redacted() -> None:
    redactor = Redactor([SECRETS[0]])
    text = f"short {SECRETS[0]}"

    assert redactor.cut(text, 100, marker="...") == f"short {MASK}"
    assert NO_SECRETS.cut(text, 100) == text


def test_a_byte_cut_never_splits_a_character() -> None:
    text = "€" * 10

    assert shorten(text, 7, size=utf8_size) == "€€"
    assert shorten(text, 7, size=json_size) == "€"  # the two quotes count


@pytest.mark.parametrize("secret", [*SECRETS, SPECIAL], ids=["short", "medium", "long", "special"])
def test_text_cut_before_it_arrived_masks_a_secret_cut_at_any_character(secret: str) -> None:
    redactor = Redactor([secret])
    text = filler(20) + secret + filler(20)
    for end in range(len(text) + 1):
        truncated = redactor.redact_truncated(text[:end])
        assert_no_piece(truncated, secret)
        if end <= 20 or end >= 20 + len(secret):  # the cut is outside the secret
            assert truncated == redactor.redact(text[:end])
        elif end - 20 >= 3:  # three or more characters of the secret were left at the end
            assert truncated.endswith(MASK)


def test_text_cut_through_a_multi_byte_character_masks_the_secret_before_it() -> None:
    redactor = Redactor([SPECIAL])
    data = (filler(10) + SPECIAL + filler(10)).encode()
    for end in range(len(data) + 1):
        text = data[:end].decode("utf-8", errors="replace")
        truncated = redactor.redact_truncated(text)
        assert_no_piece(truncated, SPECIAL)
        assert "wörd" not in truncated, end


def test_a_stream_cut_short_masks_the_held_back_start_of_a_secret() -> None:
    secret = SECRETS[1]
    redactor = Redactor([secret])
    text = filler(15) + secret + filler(15)
    rng = random.Random(5)
    for end in range(len(text) + 1):
        stream = redactor.stream()
        out, pos = [], 0
        while pos < end:
            step = rng.randint(1, 9)
            out.append(stream.feed(text[pos : min(pos + step, end)]))
            pos += step
        out.append(stream.close(truncated=True))
        assert_no_piece("".join(out), secret, where=f"stream cut at {end}")


def test_a_stream_of_bytes_cut_inside_a_character_masks_the_secret_before_it() -> None:
    redactor = Redactor([SPECIAL])
    data = (filler(5) + SPECIAL).encode()
    for end in range(len(data) + 1):
        stream = redactor.stream()
        out = stream.feed_bytes(data[:end]) + stream.close(truncated=True)
        assert_no_piece(out, SPECIAL, where=f"stream cut at byte {end}")


def test_a_stream_that_ends_normally_is_not_masked_at_its_end() -> None:
    redactor = Redactor([SECRETS[1]])
    stream = redactor.stream()
    text = "the key starts with " + SECRETS[1][:5]

    assert stream.feed(text) + stream.close() == text
