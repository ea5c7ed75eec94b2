"""Behaviour of the redactor: what it masks, how it merges, and how it streams."""

from __future__ import annotations

import base64
import html
import itertools
import json
import random
import shlex
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest

from sidecar.redaction import MASK, Redactor, StreamRedactor, _needles
from tools.base import JsonValue

# Has JSON, repr, URL and HTML specials, a non-ASCII letter, and bytes whose base64
# contains "+" and "/" so the URL-safe alphabet differs from the standard one.
SPECIAL = "k3y'\"<&>?/ é\\~~~>>>???"

ENCODINGS: dict[str, Callable[[str], str]] = {
    "exact": lambda s: s,
    "json": lambda s: json.dumps(s)[1:-1],
    "json-unicode": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "repr": lambda s: repr(s)[1:-1],
    "quote-nothing-safe": lambda s: quote(s, safe=""),
    "quote": quote,
    "quote-plus": quote_plus,
    "html": html.escape,
    "html-no-quotes": lambda s: html.escape(s, quote=False),
    "xml-named": lambda s: html.escape(s, False).replace("'", "&apos;").replace('"', "&quot;"),
    "xml-decimal": lambda s: html.escape(s, False).replace("'", "&#39;").replace('"', "&#34;"),
    "xml-hex": lambda s: html.escape(s, False).replace("'", "&#x27;").replace('"', "&#x22;"),
    "xml-apostrophe-only": lambda s: html.escape(s, False).replace("'", "&apos;"),
    "shell-quote": lambda s: shlex.quote(s)[1:-1],  # the outer quotes are not the secret's
    "shell-backslash": lambda s: s.replace("'", "'\\''"),
}


@pytest.mark.parametrize("encoding", ["xml-named", "xml-decimal", "xml-hex", "shell-quote"])
def test_the_entity_and_shell_forms_are_masked_in_streams_too(encoding: str) -> None:
    redactor = Redactor([SPECIAL])
    text = f"<value>{ENCODINGS[encoding](SPECIAL)}</value>"

    assert redactor.redact(text) == "<value>***</value>"
    for pieces in splits_everywhere(text):
        assert stream_all(redactor, pieces) == "<value>***</value>", pieces


def test_a_logged_command_line_quoting_a_secret_is_masked() -> None:
    redactor = Redactor([SPECIAL])
    command = shlex.join(["curl", "-H", f"Authorization: Bearer {SPECIAL}", "https://api.test/"])

    assert redactor.redact(command) == "curl -H 'Authorization: Bearer ***' https://api.test/"


def stream_all(redactor: Redactor, pieces: list[str]) -> str:
    stream = redactor.stream()
    return "".join(stream.feed(piece) for piece in pieces) + stream.close()


def splits_everywhere(text: str) -> list[list[str]]:
    """Every two-piece split, one-char pieces, and seeded random multi-splits."""
    result = [[text[:i], text[i:]] for i in range(len(text) + 1)]
    result.append(list(text))
    rng = random.Random(len(text))
    for _ in range(50):
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(1, 6))))
        bounds = [0, *cuts, len(text)]
        result.append([text[a:b] for a, b in itertools.pairwise(bounds)])
    return result


@pytest.mark.parametrize("encoding", ENCODINGS.values(), ids=ENCODINGS.keys())
def test_each_encoded_form_of_a_secret_is_masked(encoding: Callable[[str], str]) -> None:
    redactor = Redactor([SPECIAL])
    form = encoding(SPECIAL)

    assert redactor.redact(f"before {form} after") == f"before {MASK} after"


@pytest.mark.parametrize("urlsafe", [False, True], ids=["standard", "urlsafe"])
@pytest.mark.parametrize("skew", [0, 1, 2])
def test_base64_of_a_secret_is_masked_in_every_byte_alignment(skew: int, urlsafe: bool) -> None:
    secret = SPECIAL.encode()
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    rng = random.Random(skew)
    prefix = rng.randbytes(skew + 9)
    data = prefix + secret + rng.randbytes(7)
    encoded = encode(data).decode()

    redacted = Redactor([SPECIAL]).redact(encoded)

    # Every base64 character made only of the secret's bits must be inside the mask.
    first = -(-8 * len(prefix) // 6)
    last = 8 * (len(prefix) + len(secret)) // 6 - 1
    assert redacted.count(MASK) == 1
    head, tail = redacted.split(MASK)
    assert encoded.startswith(head)
    assert encoded.endswith(tail)
    assert len(head) <= first
    assert len(encoded) - len(tail) > last


def test_a_secret_starting_inside_another_is_masked_completely() -> None:
    redactor = Redactor(["abcdef12", "ef123456"])

    assert redactor.redact("xxabcdef123456yy") == "xx***yy"


def test_adjacent_secrets_become_one_mask() -> None:
    redactor = Redactor(["aaaaaaaa", "bbbbbbbb"])

    assert redactor.redact("<aaaaaaaabbbbbbbb>") == "<***>"


def test_a_secret_inside_another_secret_is_masked_alone_and_within() -> None:
    redactor = Redactor(["longsecretvalue", "secret"])

    assert redactor.redact("a longsecretvalue b secret c") == "a *** b *** c"


def test_every_occurrence_is_masked() -> None:
    redactor = Redactor(["hunter22"])

    assert redactor.redact("hunter22 hunter22hunter22 x") == "*** *** x"


def test_short_secret_is_masked_exactly_but_its_short_encodings_are_not() -> None:
    redactor = Redactor(["a b"])

    assert _needles("a b") == {"a b"}
    assert redactor.redact("x a b y") == "x *** y"
    assert redactor.redact("a+b a%20b YSBi") == "a+b a%20b YSBi"


def test_each_line_of_a_multiline_secret_is_masked_and_short_lines_are_not() -> None:
    redactor = Redactor(["first-line-value\r\nsecond-line-value\nok"])

    redacted = redactor.redact("a first-line-value b second-line-value c ok")

    assert redacted == "a *** b *** c ok"


def test_empty_secrets_are_ignored() -> None:
    redactor = Redactor(["", ""])

    assert not redactor
    assert redactor.longest == 0


def test_empty_redactor_returns_its_input_unchanged() -> None:
    redactor = Redactor.empty()
    value: JsonValue = {"a": ["b", 1]}
    text = "anything at all"

    assert not redactor
    assert redactor.longest == 0
    assert redactor.redact(text) is text
    assert redactor.redact_value(value) is value
    assert stream_all(redactor, ["any", "thing"]) == "anything"


def test_text_without_secrets_is_returned_as_the_same_object() -> None:
    redactor = Redactor(["s3cr3t-value"])
    text = "nothing to see here e\uffff"

    assert redactor
    assert redactor.redact(text) is text


def test_longest_is_the_length_of_the_longest_needle() -> None:
    secret = "abcdefghijkl"
    redactor = Redactor([secret])

    assert redactor.longest == max(map(len, _needles(secret)))
    assert redactor.longest == 16  # the unaligned base64 form is longer than the value


def test_redact_value_walks_nested_values_and_keys() -> None:
    redactor = Redactor(["tok-123456"])
    value: JsonValue = {
        "tok-123456": [{"auth": "Bearer tok-123456"}, 3, 2.5, True, None],
        "plain": {"nested": ["x tok-123456 y", False]},
    }

    assert redactor.redact_value(value) == {
        MASK: [{"auth": f"Bearer {MASK}"}, 3, 2.5, True, None],
        "plain": {"nested": [f"x {MASK} y", False]},
    }


def test_redact_value_leaves_non_strings_alone() -> None:
    redactor = Redactor(["12345678"])

    assert redactor.redact_value(12345678) == 12345678
    assert redactor.redact_value(1.5) == 1.5
    assert redactor.redact_value(True) is True
    assert redactor.redact_value(None) is None


def test_unicode_secrets_and_their_escapes_are_masked() -> None:
    secret = "pässwörd-🔑-ünï"
    redactor = Redactor([secret])

    assert redactor.redact(f"é {secret} é") == f"é {MASK} é"
    assert redactor.redact(json.dumps({"k": secret})) == '{"k": "***"}'
    assert redactor.redact(quote(secret)) == MASK


STREAM_CASES = [
    (["abcdef12", "ef123456"], "xxabcdef123456yy"),
    (["abcdef12", "ef123456"], "abcdef123456"),
    (["aaaaaaaa", "bbbbbbbb"], "aaaaaaaabbbbbbbbaaaaaaaa-bbbbbbbb"),
    (["longsecretvalue", "secret"], "secretlongsecretvaluesecret x secret"),
    (["s3cr3t-value"], "s3cr3t-value"),
    (["s3cr3t-value"], "s3cr3t-valu"),
    (["ab"], "abababxab"),
    (["pässwörd-🔑"], "é pässwörd-🔑 ö pässwörd-🔑"),
    (["€uro-secret"], "a€b €uro-secret 🔑 é €uro-secret x"),
    ([SPECIAL], f"<{json.dumps(SPECIAL)}|{quote_plus(SPECIAL)}>"),
    (["zzzzzzzz"], "no secret here at all, just text"),
]


@pytest.mark.parametrize(("secrets", "text"), STREAM_CASES)
def test_stream_output_equals_whole_text_redaction_for_every_split(
    secrets: list[str], text: str
) -> None:
    redactor = Redactor(secrets)
    expected = redactor.redact(text)

    for pieces in splits_everywhere(text):
        assert stream_all(redactor, pieces) == expected, pieces
    data = text.encode()  # and of UTF-8 bytes split anywhere, inside a character too
    for i in range(len(data) + 1):
        stream = redactor.stream()
        out = stream.feed_bytes(data[:i]) + stream.feed_bytes(data[i:]) + stream.close()
        assert out == expected, i


def test_stream_of_bytes_replaces_invalid_and_truncated_utf8() -> None:
    redactor = Redactor(["s3cr3t-value"])
    data = b"\xff s3cr3t-value \xc3"
    stream = redactor.stream()

    out = "".join(stream.feed_bytes(data[i : i + 1]) for i in range(len(data))) + stream.close()

    assert out == "\ufffd *** \ufffd"


def test_stream_holds_back_less_than_the_longest_needle() -> None:
    redactor = Redactor(["s3cr3t-value"])
    stream = redactor.stream()
    text = "plain text without any secret in it"
    emitted = 0

    for i, char in enumerate(text, start=1):
        emitted += len(stream.feed(char))
        assert i - emitted <= redactor.longest - 1


def test_a_mask_spanning_many_chunks_is_emitted_once() -> None:
    redactor = Redactor(["aaaaaaaa", "bbbbbbbb"])
    stream = redactor.stream()

    outputs = [stream.feed(char) for char in "aaaaaaaabbbbbbbbaaaaaaaa!"]

    assert "".join(outputs) + stream.close() == "***!"


def test_close_after_an_early_stop_flushes_the_held_back_text() -> None:
    redactor = Redactor(["s3cr3t-value"])
    stream = redactor.stream()
    out = ""
    with pytest.raises(RuntimeError):  # noqa: PT012
        try:
            out += stream.feed("partial output then s3cr3t-va")
            raise RuntimeError("upstream broke")
        finally:
            out += stream.close()

    assert out == "partial output then s3cr3t-va"


def test_close_is_idempotent_and_feeding_after_close_fails() -> None:
    stream: StreamRedactor = Redactor(["s3cr3t-value"]).stream()
    first = stream.feed("tail s3cr3t-value")

    assert first + stream.close() == "tail ***"
    assert stream.close() == ""
    with pytest.raises(ValueError, match="after close"):
        stream.feed("more")


def test_streams_from_one_redactor_are_independent() -> None:
    redactor = Redactor(["abcdef12"])
    one, two = redactor.stream(), redactor.stream()

    out_one = one.feed("xxabcd")
    out_two = two.feed("ef12yy")

    assert out_one + one.close() == "xxabcd"
    assert out_two + two.close() == "ef12yy"


def brute_force_redact(needles: set[str], text: str) -> str:
    """Mask every run of characters covered by, or touching, an occurrence of a needle."""
    spans = sorted(
        (i, i + len(needle))
        for needle in needles
        for i in range(len(text))
        if text.startswith(needle, i)
    )
    merged: list[list[int]] = []
    for start, stop in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    pieces, pos = [], 0
    for start, stop in merged:
        pieces += [text[pos:start], MASK]
        pos = stop
    return "".join([*pieces, text[pos:]])


def test_redact_and_stream_agree_with_a_brute_force_reference_on_random_overlaps() -> None:
    rng = random.Random(7)
    for _ in range(300):
        secrets = [
            "".join(rng.choices("ab€", k=rng.randint(1, 7))) for _ in range(rng.randint(1, 4))
        ]
        text = "".join(rng.choices("ab€ ", k=rng.randint(0, 40)))
        redactor = Redactor(secrets)
        needles = {needle for secret in secrets for needle in _needles(secret)}

        expected = brute_force_redact(needles, text)

        assert redactor.redact(text) == expected, (secrets, text)
        for pieces in splits_everywhere(text)[-10:]:
            assert stream_all(redactor, pieces) == expected, (secrets, pieces)


def test_text_that_cannot_begin_a_secret_goes_out_at_once() -> None:
    redactor = Redactor(["Zyxwvutsrq-secret"])
    stream = redactor.stream()

    assert stream.feed("(1 + 2) = 3.") == "(1 + 2) = 3."  # nothing here starts a needle
    assert stream.feed(" key: Zyxw") == " key: "  # the start of the secret waits
    assert stream.feed("vutsrq-secret!") + stream.close() == "***!"
