"""Throughput of the redactor against a regex alternation baseline, on the same data.

100 random secrets (16-40 characters) over 1 MB of log-like text with a few secrets,
in several encodings, sprinkled in. Targets: `redact` >= 50 MB/s, stream >= 25 MB/s.
A second redactor holds the same secrets with a quote of each kind inside, so that
each also registers its HTML/XML entity and shell-quoted forms (about five times the
needles): its row shows what those forms cost.
Run with `python -m tests.bench` or `python -m tests.bench.bench_redaction`.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
import time
from collections.abc import Callable
from urllib.parse import quote_plus

from sidecar.redaction import Redactor, _needles

SIZE = 1_000_000
SECRETS = 100
REDACT_TARGET = 50.0
STREAM_TARGET = 25.0
CHUNK_SIZES = (4096, 16384, 65536)
REPEATS = 5

_VOCABULARY = (
    "the of and to in is that for it as was with be by on not this are or from at which "
    "have an they you were there been one all we their has would when if will can more who "
    "out other what up into time about only new some could them these two may first then "
    "GET POST /api/v1/tools/call 200 404 500 INFO DEBUG WARN ERROR request_id user_id "
    'latency_ms=12 {"status": "ok"} https://api.example.com/v2/items?page=3 '
    "2025-11-22T00:57:31.204Z call_01JDX3Q5Z9 tool=http_get retry=2 bytes=5120"
)
WORDS = _VOCABULARY.split()


def make_data(rng: random.Random) -> tuple[list[str], str]:
    """The secrets and about SIZE characters of text holding 40 leaks of them."""
    alphabet = string.ascii_letters + string.digits
    secrets = ["".join(rng.choices(alphabet, k=rng.randint(16, 40))) for _ in range(SECRETS)]
    leak_forms: list[Callable[[str], str]] = [
        lambda s: s,
        lambda s: json.dumps({"token": s}),
        lambda s: quote_plus(f"key={s}"),
        lambda s: base64.b64encode(f"user:{s}".encode()).decode(),
    ]
    lines: list[str] = []
    size = 0
    while size < SIZE:
        line = " ".join(rng.choices(WORDS, k=rng.randint(6, 24))) + "\n"
        lines.append(line)
        size += len(line)
    for _ in range(40):
        at = rng.randrange(len(lines))
        leak = rng.choice(leak_forms)(rng.choice(secrets))
        lines[at] = lines[at].replace(" ", f" {leak} ", 1)
    return secrets, "".join(lines)[:SIZE]


def best_seconds(run: Callable[[], object], repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def stream_through(redactor: Redactor, text: str, chunk_size: int) -> str:
    stream = redactor.stream()
    out = [stream.feed(text[i : i + chunk_size]) for i in range(0, len(text), chunk_size)]
    out.append(stream.close())
    return "".join(out)


def main() -> None:
    """Print MB/s for the baseline, `redact` and the stream, with ratios and targets."""
    secrets, text = make_data(random.Random(20251122))
    megabytes = len(text.encode()) / 1e6

    started = time.perf_counter()
    redactor = Redactor(secrets)
    build_ms = (time.perf_counter() - started) * 1e3
    needles = sorted({needle for secret in secrets for needle in _needles(secret)})
    alternation = re.compile("|".join(map(re.escape, needles)))

    expected = redactor.redact(text)
    for chunk_size in CHUNK_SIZES:
        assert stream_through(redactor, text, chunk_size) == expected
    print(f"{len(secrets)} secrets, {len(needles)} needles, {megabytes:.2f} MB of text")
    print(f"Redactor built in {build_ms:.1f} ms; {expected.count('***')} masks in the output")

    baseline = megabytes / best_seconds(lambda: alternation.sub("***", text), repeats=2)
    rows: list[tuple[str, float, float | None]] = [("regex alternation (baseline)", baseline, None)]
    redact_speed = megabytes / best_seconds(lambda: redactor.redact(text))
    rows.append(("Redactor.redact", redact_speed, REDACT_TARGET))
    for chunk_size in CHUNK_SIZES:

        def run(size: int = chunk_size) -> str:
            return stream_through(redactor, text, size)

        name = f"StreamRedactor, {chunk_size // 1024} KB chunks"
        rows.append((name, megabytes / best_seconds(run), STREAM_TARGET))

    quoted = [f"{secret[:8]}'{secret[8:12]}\"{secret[12:]}" for secret in secrets]
    started = time.perf_counter()
    with_quotes = Redactor(quoted)
    quoted_build_ms = (time.perf_counter() - started) * 1e3
    quoted_needles = len({needle for secret in quoted for needle in _needles(secret)})
    print(f"The quoted secrets' redactor built in {quoted_build_ms:.1f} ms")
    name = f"Redactor.redact, quoted ({quoted_needles})"
    rows.append((name, megabytes / best_seconds(lambda: with_quotes.redact(text)), REDACT_TARGET))

    for name, speed, target in rows:
        verdict = (
            "" if target is None else ("  target met" if speed >= target else "  TARGET MISSED")
        )
        print(f"  {name:<32} {speed:8.1f} MB/s  x{speed / baseline:6.1f} baseline{verdict}")
    stream_worst = min(speed for name, speed, _ in rows if name.startswith("StreamRedactor"))
    print(
        f"targets: redact >= {REDACT_TARGET:g} MB/s: {redact_speed >= REDACT_TARGET}; "
        f"stream (4-64 KB chunks) >= {STREAM_TARGET:g} MB/s: {stream_worst >= STREAM_TARGET}"
    )


if __name__ == "__main__":
    main()
