"""Secret redaction: the one place where secret values are masked on the way out.

A `Redactor` is built once per call from the secrets the call may see. It registers
each secret's exact value plus the encodings it commonly leaks in (JSON, `repr`,
URL, HTML and XML entities in their usual spellings, shell quoting, base64 in its
three byte alignments, each line of a multi-line value), finds every occurrence with
one Aho-Corasick pass, merges overlapping and adjacent occurrences and replaces each
merged run by `MASK`. `StreamRedactor` does the same over a stream of chunks,
holding back at most `longest - 1` characters.

Shortening text follows one rule: redact the whole text, then cut (`Redactor.cut`).
Cutting first can split a secret so that the part left no longer matches, and a
readable prefix leaves. Where the text was cut before the service saw it whole (a
capped read, a stream that ended early), the tail that could begin a secret is
masked as well (`Redactor.redact_truncated`, `StreamRedactor.close(truncated=True)`).

Best effort against accidental leaks, like the CI maskers it copies: a secret that
is transformed in any other way (reversed, split, re-encoded twice) gets through.
"""

from __future__ import annotations

import base64
import codecs
import html
import itertools
import json
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

import ahocorasick

from tools.base import JsonValue, shorten

__all__ = ["MASK", "Redactor", "StreamRedactor"]

MASK = "***"

# Short derived needles would mask unrelated text (a 4-char base64 run is common).
_MIN_DERIVED = 6
_URLSAFE = str.maketrans("+/", "-_")
# A cut text's tail this long that begins a needle is masked. Shorter tails are not
# worth hiding (they would mask common letters at the end of many cut texts), and at
# this length the mask is never longer than what it hides, so a cap still holds.
_MIN_PARTIAL = len(MASK)
# What a decoder leaves where a cut went through a multi-byte character.
_REPLACEMENT = "\ufffd"
# The spellings of a quote in HTML and XML text: raw (escaped elsewhere only), named,
# decimal, hexadecimal. An encoder uses one spelling per character throughout.
_APOSTROPHES = ("'", "&apos;", "&#39;", "&#x27;")
_QUOTES = ('"', "&quot;", "&#34;", "&#x22;")
# Shell quoting of a value holding a quote: `shlex.quote` closes the single-quoted
# string, adds a double-quoted quote and reopens it; the other POSIX idiom escapes it.
_SHELL_QUOTES = ("'\"'\"'", "'\\''")

# pyahocorasick finds a node's child by a linear scan in insertion order, so most of
# the scan time goes to looking up text characters among the root's children. Adding
# words in the order of how often their characters occur in typical text (logs, JSON,
# prose) roughly doubles throughput. Frequent characters that start no needle get a
# placeholder word (value 0, never reported) so that they, too, are found early.
_FREQUENT = (
    ' etaoinsrhldcumwfygpbvk\n"0/:1,2._-=3456789xjqz'
    "TESAORINLCDMPGHUFBWYVKXJQZ{}[]()'\t<>?&;#%+*@!|$^~`\\\r"
)
_RANK = {char: rank for rank, char in enumerate(_FREQUENT)}
_PLACEHOLDER_TAIL = "\uffff"
# With few needles the root has few children and placeholders cost more to build
# (a per-call price) than they save in scanning.
_PLACEHOLDERS_FROM = 64


def _base64_forms(raw: bytes) -> Iterable[str]:
    """The base64 text that depends only on `raw`, for each of its three byte alignments."""
    for skew in range(3):
        encoded = base64.b64encode(bytes(skew) + raw).decode("ascii")
        # Characters that carry bits of the skew bytes, or of whatever follows the
        # secret, differ from one occurrence to the next: keep the rest.
        start = (8 * skew + 5) // 6
        stop = 8 * (skew + len(raw)) // 6
        piece = encoded[start:stop]
        yield piece
        yield piece.translate(_URLSAFE)


def _entity_forms(secret: str) -> Iterable[str]:
    """The secret as HTML or XML text: `&`, `<`, `>` named, each quote in each spelling."""
    if not any(char in secret for char in "&<>\"'"):
        return
    base = html.escape(secret, quote=False)
    apostrophes = _APOSTROPHES if "'" in secret else _APOSTROPHES[:1]
    quotes = _QUOTES if '"' in secret else _QUOTES[:1]
    for apostrophe, quote_mark in itertools.product(apostrophes, quotes):
        yield base.replace("'", apostrophe).replace('"', quote_mark)


def _shell_forms(secret: str) -> Iterable[str]:
    """The secret inside a single-quoted shell word (`shlex.quote` and `'\\''`)."""
    if "'" in secret:
        for escaped in _SHELL_QUOTES:
            yield secret.replace("'", escaped)


def _needles(secret: str) -> set[str]:
    """Every string registered for one secret: the value and its derived forms."""
    if not secret:
        return set()
    raw = secret.encode("utf-8", "surrogatepass")
    derived = {
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        quote(raw, safe=""),
        quote(raw),
        quote_plus(raw),
        html.escape(secret),
        *_entity_forms(secret),
        *_shell_forms(secret),
        *_base64_forms(raw),
    }
    lines = secret.splitlines()
    if len(lines) > 1:
        derived.update(lines)
    return {secret} | {form for form in derived if len(form) >= _MIN_DERIVED}


def _rank_key(word: str) -> list[int]:
    return [_RANK.get(char, len(_RANK) + ord(char)) for char in word]


def _build_automaton(needles: set[str]) -> ahocorasick.Automaton:
    """An automaton whose values are needle lengths (0 for placeholder words)."""
    words = {needle: len(needle) for needle in needles}
    if len(needles) >= _PLACEHOLDERS_FROM:
        firsts = {needle[0] for needle in needles}
        for char in _FREQUENT:
            if char not in firsts:
                words[char + _PLACEHOLDER_TAIL] = 0
    automaton = ahocorasick.Automaton()
    for word in sorted(words, key=_rank_key):
        automaton.add_word(word, words[word])
    automaton.make_automaton()
    return automaton


def _merge(
    matches: Iterable[tuple[int, int]],
    spans: list[tuple[int, int]],
    shift: int = 0,
    first_end: int = 0,
) -> None:
    """Merge `(end_index, length)` matches into `spans`, sorted, disjoint, non-adjacent.

    Indexes are moved by `shift`; matches ending before `first_end` are skipped. Matches
    come in order of their end index, so a new match can only swallow spans at the end
    of the list.
    """
    for end_index, length in matches:
        if not length or end_index < first_end:
            continue
        start, stop = shift + end_index + 1 - length, shift + end_index + 1
        while spans and start <= spans[-1][1]:
            start = min(start, spans.pop()[0])
        spans.append((start, stop))


class Redactor:
    """Masks a fixed set of secrets, and their usual encodings, in text and JSON values."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(secret for secret in secrets if secret)
        needles: set[str] = set()
        for secret in self._secrets:
            needles |= _needles(secret)
        self._longest = max(map(len, needles), default=0)
        self._firsts = frozenset(needle[0] for needle in needles)
        self._automaton = _build_automaton(needles) if needles else None

    @classmethod
    def empty(cls) -> Redactor:
        """A redactor that masks nothing."""
        return cls(())

    def __bool__(self) -> bool:
        return self._automaton is not None

    def __or__(self, other: Redactor) -> Redactor:
        """A redactor for the secrets of both: one pass, so overlapping secrets of the
        two are masked whole (redacting with one, then the other, would not)."""
        if not other:
            return self
        if not self:
            return other
        return Redactor((*self._secrets, *other._secrets))

    @property
    def longest(self) -> int:
        """The length of the longest needle (0 when there is none)."""
        return self._longest

    def redact(self, text: str) -> str:
        """`text` with every occurrence of a needle masked; `text` itself when none."""
        if self._automaton is None:
            return text
        spans: list[tuple[int, int]] = []
        _merge(self._automaton.iter(text), spans)
        if not spans:
            return text
        pieces: list[str] = []
        pos = 0
        for start, stop in spans:
            pieces += (text[pos:start], MASK)
            pos = stop
        pieces.append(text[pos:])
        return "".join(pieces)

    def cut(
        self, text: str, limit: int, *, size: Callable[[str], int] = len, marker: str = ""
    ) -> str:
        """`text` redacted whole, then cut to its longest start that fits `limit`.

        `size` measures the result (characters by default; UTF-8 or JSON bytes where
        a cap counts those); `marker` ends a text that was cut (`"..."`) and counts.
        """
        return shorten(self.redact(text), limit, size=size, marker=marker)

    def redact_truncated(self, text: str) -> str:
        """`text`, cut at its end before it reached us, with any secret in it masked.

        A tail that could begin a secret (the start of a needle, a replacement
        character left by a cut through a multi-byte character after it) is masked too.
        """
        redacted = self.redact(text)
        start = self._open_tail(redacted)
        return redacted if start is None else redacted[:start] + MASK

    def _open_tail(self, text: str) -> int | None:
        """Where the longest tail of `text` that begins a needle starts (None: no such tail)."""
        if self._automaton is None:
            return None
        end = len(text.rstrip(_REPLACEMENT))
        for length in range(min(self._longest - 1, end), _MIN_PARTIAL - 1, -1):
            if self._automaton.match(text[end - length : end]):
                return end - length
        return None

    def finds(self, text: str) -> bool:
        """Whether any secret, in any of its registered forms, occurs in `text`."""
        if self._automaton is None:
            return False
        return any(length for _, length in self._automaton.iter(text))

    def redact_value(self, value: JsonValue) -> JsonValue:
        """A copy of a JSON value with every string redacted, dict keys included."""
        if self._automaton is None:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact(key): self.redact_value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.redact_value(item) for item in value]
        return value

    def stream(self) -> StreamRedactor:
        """A new streaming redactor sharing this redactor's needles."""
        return StreamRedactor(self, max(self._longest - 1, 0))


class StreamRedactor:
    """Redacts a text stream chunk by chunk; the joined output equals `redact(whole)`.

    Get one from `Redactor.stream()`. Call `close()` at the end, and `close(truncated=True)`
    on error or cancellation, so the held-back tail is not lost and no part of a secret
    that was cut off leaves.
    """

    def __init__(self, redactor: Redactor, holdback: int) -> None:
        self._redactor = redactor
        self._automaton = redactor._automaton
        self._holdback = holdback
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""  # the last `holdback` characters fed
        self._end = 0  # characters fed so far
        self._offset = 0  # characters settled (emitted as text or under a mask)
        self._masked_until = -1  # end of the last mask emitted
        self._pending: list[tuple[int, int]] = []  # spans found but not emitted yet
        self._closed = False

    def feed(self, chunk: str) -> str:
        """Take the next chunk; return the text that can be emitted now."""
        if self._closed:
            raise ValueError("feed() after close()")
        if not chunk:
            return ""
        # Rescanning the short tail with a fresh iterator, rather than resuming one
        # with `AutomatonSearchIter.set`, because pyahocorasick 2.x frees the wrong
        # buffer when resumed with strings of different widths (it crashes).
        text = self._tail + chunk
        base = self._end - len(self._tail)
        self._end += len(chunk)
        if self._automaton is not None:
            # Matches ending inside the tail were found by the previous call.
            _merge(self._automaton.iter(text), self._pending, base, len(self._tail))
        self._tail = text[max(len(text) - self._holdback, 0) :]
        # A match not found yet ends after the text seen so far: it starts where the
        # rest of the text is the start of a needle. Only that tail is held back, so
        # text that cannot begin a secret goes out at once (the first token's latency).
        return self._emit(self._end - self._held(text), text, base)

    def _held(self, text: str) -> int:
        """The length of the longest tail of `text` that is the start of a needle."""
        automaton = self._automaton
        if automaton is None or not text:
            return 0
        for length in range(min(self._holdback, len(text)), 1, -1):
            if automaton.match(text[-length:]):
                return length
        # One character: the automaton's placeholder words start with common letters too.
        return 1 if self._holdback and text[-1] in self._redactor._firsts else 0

    def feed_bytes(self, chunk: bytes) -> str:
        """Like `feed`, for UTF-8 bytes that may split a character across chunks."""
        return self.feed(self._decoder.decode(chunk))

    def close(self, *, truncated: bool = False) -> str:
        """Flush everything held back; later calls return "".

        `truncated`: the stream did not end but was cut (an error, a cancel, a cap),
        so a held-back tail that could begin a secret is masked instead of flushed.
        """
        if self._closed:
            return ""
        out = self.feed(self._decoder.decode(b"", final=True))
        self._closed = True
        rest = out + self._emit(self._end, self._tail, self._end - len(self._tail))
        start = self._redactor._open_tail(rest) if truncated else None
        return rest if start is None else rest[:start] + MASK

    def _emit(self, settled: int, text: str, base: int) -> str:
        """Emit up to absolute index `settled`; `text` holds the input from `base` on."""
        pieces: list[str] = []
        pos = self._offset
        done = 0
        for start, stop in self._pending:
            if start > self._masked_until:
                if start >= settled:
                    break  # a later match may still start before it
                pieces += (text[pos - base : start - base], MASK)
            # else: it continues the mask already emitted, so no second MASK.
            self._masked_until = max(self._masked_until, stop)
            pos = max(pos, stop)
            done += 1
        del self._pending[:done]
        if settled > pos:
            pieces.append(text[pos - base : settled - base])
            pos = settled
        self._offset = pos
        return "".join(pieces)
