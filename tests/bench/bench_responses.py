"""`POST /v1/responses` of a real `sidecar serve` against calling its model provider directly.

The provider is a fake OpenAI Chat Completions server in its own process (raw uvloop +
httptools, fixed pre-encoded answers: `tests.bench.chat_peers`), so neither its CPU nor
its GIL is the measuring process's; the sidecar reaches it through a providers file.
The direct baselines replay the exact bodies the sidecar sent to the fake (read back
from it), from the same lean keep-alive client (raw asyncio streams) as the sidecar's
requests. Sequential calls are interleaved in rounds after a warm-up.
  1. Non-streamed: a one-turn text answer against one direct call, and one tool round
     (the model calls `orq:current_date`, then answers) against the same two direct
     calls. Target: overhead p50 per model call <= 1 ms.
  2. Streamed: the time to the first `response.output_text.delta` against the time to
     the first content chunk of a direct call (target: +<= 1 ms p50); and the rate of a
     long answer (LONG_DELTAS deltas) through the sidecar with redaction on (the request
     holds a secret variable, which the answer spells across three deltas) against
     reading the same answer directly.
  3. Requests/s at concurrency 32 (`tests.bench.load` in its own process) of a one-turn
     answer: the sidecar against a bare Starlette + httpx relay to the same fake, in
     alternating rounds; server CPU per request from /proc. Target: >= 50% of the relay.
Run with `python -m tests.bench` or `python -m tests.bench.bench_responses`.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import uvloop

from tests.bench.bench_http_tool import p50, p95
from tests.bench.chat_peers import LONG_DELTAS, SECRET, TOOL_NAME
from tests.bench.load import exchange, make_target
from tests.bench.peers import ROOT
from tests.support.sidecar_process import RunningSidecar, run_sidecar, stop, wait_until_answering
from tests.support.upstream import free_port

LOG_LEVEL = "warning"
PROVIDER_KEY = "sk-bench-" + "Tn4Wq7Yc2Hs9Jd5F"
WARMUP = 50
CALLS = 600
ROUNDS = 6
PHASE_SECONDS = 15.0
TTFT_CALLS = 400
LONG_CALLS = 8
TARGET_MS = 1.0
CONCURRENCY = 32
LOAD_WARMUP = 1.0
LOAD_SECONDS = 4.0
LOAD_ROUNDS = 3
RATE_TARGET = 0.5
CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"

DIRECT_ONE = "direct: 1 chat call (baseline)"
RELAY_ONE = "bare Starlette + httpx relay: 1 call (information)"
ONE_TURN = "sidecar: one-turn text answer"
ONE_TURN_UNSTORED = "sidecar: one-turn, store: false (information)"
DIRECT_TWO = "direct: the tool round's 2 chat calls (baseline)"
TOOL_ROUND = "sidecar: tool round (orq:current_date)"
DIRECT_FIRST = "direct: first content chunk (baseline)"
SIDECAR_FIRST = "sidecar: first response.output_text.delta"
FIRST_UNSTORED = "sidecar: first delta, store: false (information)"
DIRECT_LONG = "direct: the long answer read (baseline)"
SIDECAR_LONG = "sidecar: the long answer, secret redacted"

DELTA_EVENT = b"event: response.output_text.delta\n"
CONTENT_CHUNK = b'"delta":{"content":"'

Sample = Callable[[], Awaitable[float]]


def responses_body(**fields: Any) -> str:
    """A `POST /v1/responses` body for the fake provider's model."""
    return json.dumps({"model": "fake/m", "input": "What is the date today?", **fields})


PLAIN = responses_body()
UNSTORED = responses_body(store=False)
WITH_TOOL = responses_body(tools=[{"type": "orq:current_date"}])
STREAMED = responses_body(stream=True)
STREAMED_UNSTORED = responses_body(stream=True, store=False)
LONG = responses_body(
    model="fake/long", stream=True, variables={"token": {"secret": True, "value": SECRET}}
)


# --- the peers ------------------------------------------------------------------------------


@dataclass
class Peers:
    """The fake provider, the relay in front of it and the sidecar, each a process."""

    fake_url: str
    fake: subprocess.Popen[bytes]
    relay_url: str
    relay: subprocess.Popen[bytes]
    sidecar: RunningSidecar

    def sent_for(self, body: str, count: int) -> list[str]:
        """Send `body` to the sidecar; the `count` chat bodies it sent the fake for it
        (read back from the fake, encoded again compactly as the sidecar encodes them)."""
        answer = httpx.post(f"{self.sidecar.base_url}{RESPONSES}", content=body, timeout=30)
        assert answer.status_code == 200, answer.text
        return self.recorded(count)

    def recorded(self, count: int) -> list[str]:
        """The last `count` bodies the fake took."""
        bodies = httpx.get(f"{self.fake_url}/recorded", timeout=10).json()
        return [orjson.dumps(sent).decode() for sent in bodies[-count:]]


@contextmanager
def peer(*args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    command = [sys.executable, "-m", "tests.bench.chat_peers", args[0], str(port), *args[1:]]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(process, f"{url}/healthz", 20, lambda: " ".join(args))
        yield url, process
    finally:
        stop(process)


def fake_providers(fake_url: str) -> str:
    """The providers file naming the scripted provider at `fake_url` (its key in
    BENCH_FAKE_KEY)."""
    return (
        "providers:\n"
        f"  - {{name: fake, wire: openai-chat, base_url: '{fake_url}/v1',"
        " api_key_env: BENCH_FAKE_KEY}\n"
    )


@contextmanager
def running_peers(workdir: Path) -> Iterator[Peers]:
    """Start the fake, the relay and the sidecar; stop them on exit."""
    with peer("fake") as (fake_url, fake), peer("relay", f"{fake_url}/v1") as (relay_url, relay):
        providers = workdir / "providers.yaml"
        providers.write_text(fake_providers(fake_url))
        env = {
            "SIDECAR_LOG_LEVEL": LOG_LEVEL,
            "SIDECAR_PROVIDERS_FILE": str(providers),
            "BENCH_FAKE_KEY": PROVIDER_KEY,
            "SIDECAR_SANDBOX_ENABLED": "false",
        }
        with run_sidecar(workdir, env) as sidecar:
            yield Peers(fake_url, fake, relay_url, relay, sidecar)


# --- a lean client ----------------------------------------------------------------------------


class Link:
    """One keep-alive connection to a server, opened again if the server closed it idle."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        parts = urlsplit(base_url)
        assert parts.hostname is not None
        assert parts.port is not None
        self._address = (parts.hostname, parts.port)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    def request(self, path: str, body: str) -> bytes:
        """A POST of `body` to `path`, encoded once."""
        return make_target(f"{self.base_url}{path}", body).request

    async def post(self, request: bytes) -> None:
        """One request answered 200 with a Content-Length body."""
        status, body = await self._again(exchange, request)
        assert status == 200, body

    async def stream(self, request: bytes, marker: bytes) -> tuple[float, int]:
        """One request answered with a chunked stream: seconds to the first `marker` and
        how many there were (an event is never split across chunks: one write each)."""
        result: tuple[float, int] = await self._again(_read_stream, request, marker)
        return result

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None

    async def _again(self, call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        if self._streams is None:
            self._streams = await asyncio.open_connection(*self._address)
        try:
            return await call(*self._streams, *args)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()  # closed while idle: once more, on a new connection
            self._streams = await asyncio.open_connection(*self._address)
            return await call(*self._streams, *args)


async def _read_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, marker: bytes
) -> tuple[float, int]:
    started = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"chunked" in head.lower(), head
    first, count = 0.0, 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return first, count
        found = (await reader.readexactly(size + 2)).count(marker)
        if found and not count:
            first = time.perf_counter() - started
        count += found


# --- measuring ------------------------------------------------------------------------------


async def interleaved(
    variants: Mapping[str, Sample], *, calls: int, rounds: int, warmup: int
) -> dict[str, list[float]]:
    """Warm each variant up, then take `calls` samples of each in interleaved rounds;
    the rounds stop early once PHASE_SECONDS have passed."""
    deadline = time.perf_counter() + PHASE_SECONDS
    for sample in variants.values():
        for _ in range(warmup):
            await sample()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, sample in variants.items():
            for _ in range(calls // rounds):
                samples[name].append(await sample())
        if time.perf_counter() > deadline:
            break
    return samples


def timer(call: Callable[[], Awaitable[object]]) -> Sample:
    """A sample: the milliseconds one `call` takes."""

    async def sample() -> float:
        started = time.perf_counter()
        await call()
        return (time.perf_counter() - started) * 1e3

    return sample


def print_latencies(samples: Mapping[str, list[float]], baselines: Mapping[str, str]) -> None:
    """p50/p95 of each variant, and its p50 over its baseline's."""
    for name, values in samples.items():
        base = baselines.get(name)
        extra = f"  over baseline p50 {p50(values) - p50(samples[base]):+.3f} ms" if base else ""
        print(
            f"  {name:<50} p50 {p50(values):6.3f} ms  p95 {p95(values):6.3f} ms"
            f"  (n={len(values)}){extra}"
        )


def verdict(label: str, value: float, target: float) -> None:
    """One verdict line for a p50 overhead in ms."""
    met = "met" if value <= target else "MISSED"
    print(f"{label} = {value:+.3f} ms (target <= {target:g} ms): {met}")


# --- 1. non-streamed ----------------------------------------------------------------------


def check_answers(peers: Peers) -> None:
    """The sidecar answers as it should before anything is timed."""
    url = f"{peers.sidecar.base_url}{RESPONSES}"
    plain = httpx.post(url, content=PLAIN, timeout=10).json()
    assert (plain["status"], plain["output_text"]) == ("completed", "Today is a fine day."), plain
    round_trip = httpx.post(url, content=WITH_TOOL, timeout=10).json()
    assert round_trip["output_text"] == "Today is a fine day.", round_trip
    tool = round_trip["output"][0]
    assert (tool["type"], tool["status"]) == ("orq:current_date", "completed"), tool


async def non_streamed(peers: Peers) -> None:
    """Part 1."""
    (one,) = peers.sent_for(PLAIN, 1)
    call, answer = peers.sent_for(WITH_TOOL, 2)
    assert TOOL_NAME in call, call
    assert '"role":"tool"' in answer, answer
    fake, relay = Link(peers.fake_url), Link(peers.relay_url)
    sidecar = Link(peers.sidecar.base_url)
    direct_one, relayed = fake.request(CHAT, one), relay.request(CHAT, one)
    direct_call, direct_answer = fake.request(CHAT, call), fake.request(CHAT, answer)
    plain, unstored = sidecar.request(RESPONSES, PLAIN), sidecar.request(RESPONSES, UNSTORED)
    with_tool = sidecar.request(RESPONSES, WITH_TOOL)

    async def two_direct() -> None:
        await fake.post(direct_call)
        await fake.post(direct_answer)

    samples = await interleaved(
        {
            DIRECT_ONE: timer(lambda: fake.post(direct_one)),
            RELAY_ONE: timer(lambda: relay.post(relayed)),
            ONE_TURN: timer(lambda: sidecar.post(plain)),
            ONE_TURN_UNSTORED: timer(lambda: sidecar.post(unstored)),
            DIRECT_TWO: timer(two_direct),
            TOOL_ROUND: timer(lambda: sidecar.post(with_tool)),
        },
        calls=CALLS,
        rounds=ROUNDS,
        warmup=WARMUP,
    )
    for link in (fake, relay, sidecar):
        await link.close()
    print_latencies(
        samples,
        {
            RELAY_ONE: DIRECT_ONE,
            ONE_TURN: DIRECT_ONE,
            ONE_TURN_UNSTORED: DIRECT_ONE,
            TOOL_ROUND: DIRECT_TWO,
        },
    )
    one_turn = p50(samples[ONE_TURN]) - p50(samples[DIRECT_ONE])
    verdict("one-turn overhead p50 per model call", one_turn, TARGET_MS)
    per_call = (p50(samples[TOOL_ROUND]) - p50(samples[DIRECT_TWO])) / 2
    verdict("tool-round overhead p50 per model call (2 calls, tool run in)", per_call, TARGET_MS)


# --- 2. streamed -------------------------------------------------------------------------


def first_delta(link: Link, request: bytes, marker: bytes) -> Sample:
    """A sample: the milliseconds to a stream's first `marker`."""

    async def sample() -> float:
        seconds, count = await link.stream(request, marker)
        assert count, "no delta"
        return seconds * 1e3

    return sample


def delta_rate(link: Link, request: bytes, marker: bytes, counts: list[int]) -> Sample:
    """A sample: the `marker`s per second of a whole stream (each count kept in `counts`)."""

    async def sample() -> float:
        started = time.perf_counter()
        _, count = await link.stream(request, marker)
        counts.append(count)
        return count / (time.perf_counter() - started)

    return sample


def long_stream_deltas(peers: Peers) -> int:
    """The long answer through the sidecar is whole and redacted; its number of deltas."""
    pieces: list[str] = []
    url = f"{peers.sidecar.base_url}{RESPONSES}"
    with httpx.stream("POST", url, content=LONG, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and '"response.output_text.delta"' in line:
                pieces.append(json.loads(line.removeprefix("data: "))["delta"])
    text = "".join(pieces)
    assert SECRET not in text, text
    assert "***" in text, text[:200]
    assert text.count("word") == LONG_DELTAS - 3, text.count("word")
    return len(pieces)


async def first_token(peers: Peers) -> None:
    """Part 2, the time to the first token."""
    (short,) = peers.sent_for(STREAMED, 1)
    fake, sidecar = Link(peers.fake_url), Link(peers.sidecar.base_url)
    samples = await interleaved(
        {
            DIRECT_FIRST: first_delta(fake, fake.request(CHAT, short), CONTENT_CHUNK),
            SIDECAR_FIRST: first_delta(sidecar, sidecar.request(RESPONSES, STREAMED), DELTA_EVENT),
            FIRST_UNSTORED: first_delta(
                sidecar, sidecar.request(RESPONSES, STREAMED_UNSTORED), DELTA_EVENT
            ),
        },
        calls=TTFT_CALLS,
        rounds=ROUNDS,
        warmup=WARMUP,
    )
    await fake.close()
    await sidecar.close()
    print_latencies(samples, {SIDECAR_FIRST: DIRECT_FIRST, FIRST_UNSTORED: DIRECT_FIRST})
    extra = p50(samples[SIDECAR_FIRST]) - p50(samples[DIRECT_FIRST])
    verdict("time to the first token over direct, p50", extra, TARGET_MS)


async def long_answer(peers: Peers) -> None:
    """Part 2, the rate of a long streamed answer."""
    deltas = long_stream_deltas(peers)
    (long,) = peers.recorded(1)
    assert '"model":"long"' in long, long
    fake, sidecar = Link(peers.fake_url), Link(peers.sidecar.base_url)
    counts: dict[str, list[int]] = {DIRECT_LONG: [], SIDECAR_LONG: []}
    rates = await interleaved(
        {
            DIRECT_LONG: delta_rate(
                fake, fake.request(CHAT, long), CONTENT_CHUNK, counts[DIRECT_LONG]
            ),
            SIDECAR_LONG: delta_rate(
                sidecar, sidecar.request(RESPONSES, LONG), DELTA_EVENT, counts[SIDECAR_LONG]
            ),
        },
        calls=LONG_CALLS,
        rounds=LONG_CALLS // 2,
        warmup=1,
    )
    await fake.close()
    await sidecar.close()
    assert set(counts[SIDECAR_LONG]) == {deltas}, counts[SIDECAR_LONG]
    for name, values in rates.items():
        print(
            f"  {name:<50} {p50(values):8.0f} deltas/s p50  (min {min(values):.0f};"
            f" {counts[name][0]} deltas an answer, n={len(values)})"
        )
    ratio = p50(rates[SIDECAR_LONG]) / p50(rates[DIRECT_LONG])
    print(f"long answer rate sidecar / direct p50 = {ratio:.3f} (for information)")


# --- 3. under load ------------------------------------------------------------------------


def load(url: str, body: str, pids: Sequence[int]) -> dict[str, Any]:
    """Run the load generator process against `url` and read its summary (with the CPU
    that `pids` spent in its measured phase)."""
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "tests.bench.load", url, "--body", body),
            *("--concurrency", str(CONCURRENCY), "--warmup", str(LOAD_WARMUP)),
            *("--seconds", str(LOAD_SECONDS)),
            *(f"--pid={pid}" for pid in pids),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LOAD_SECONDS * 4 + 30,
        check=True,
    )
    summary: dict[str, Any] = json.loads(completed.stdout)
    assert not summary["errors"], summary
    return summary


def measure_load(
    name: str, url: str, body: str, servers: Mapping[str, subprocess.Popen[bytes]]
) -> float:
    """One load round, printed with each server's CPU microseconds per request; its req/s."""
    summary = load(url, body, [process.pid for process in servers.values()])
    spent = summary["cpu_seconds"]
    cpu = ", ".join(
        f"{server} {spent[str(process.pid)] / summary['requests'] * 1e6:4.0f}"
        for server, process in servers.items()
    )
    print(
        f"  {name:<34} {summary['rps']:6.0f} req/s  p50 {summary['p50_ms']:6.2f} ms"
        f"  p95 {summary['p95_ms']:6.2f} ms  ({summary['requests']} requests)"
        f"  CPU us/request: {cpu}"
    )
    rps: float = summary["rps"]
    return rps


def under_load(peers: Peers) -> None:
    """Part 3."""
    (chat,) = peers.sent_for(PLAIN, 1)
    fake = {"fake": peers.fake}
    sidecar = {"sidecar": peers.sidecar.process, **fake}
    measure_load("direct to the fake (reference)", f"{peers.fake_url}{CHAT}", chat, fake)
    ratios: list[float] = []
    for number in range(1, LOAD_ROUNDS + 1):
        print(f" round {number}")
        relay = measure_load(
            "bare Starlette + httpx relay", f"{peers.relay_url}{CHAT}", chat,
            {"relay": peers.relay, **fake},
        )  # fmt: skip
        url = f"{peers.sidecar.base_url}{RESPONSES}"
        # The first run after another process's is the slowest: alternate which goes first.
        if number % 2:
            measure_load("sidecar, store: false (information)", url, UNSTORED, sidecar)
        ratios.append(measure_load("sidecar POST /v1/responses", url, PLAIN, sidecar) / relay)
        if not number % 2:
            measure_load("sidecar, store: false (information)", url, UNSTORED, sidecar)
    ratio = statistics.median(ratios)
    met = "met" if ratio >= RATE_TARGET else "MISSED"
    print(
        f"sidecar / relay req/s, median of {LOAD_ROUNDS} rounds = {ratio:.2f}"
        f" (target >= {RATE_TARGET:.2f}): {met}"
    )


def main() -> None:
    """Print the three comparisons, each against its baseline from this run, and the verdicts."""
    print(
        f"sidecar serve (SIDECAR_LOG_LEVEL={LOG_LEVEL}, sandbox off) -> a fake Chat Completions"
        " provider in its own process (fixed answers); the baselines call the fake directly"
        " with the bodies the sidecar sent it; one lean keep-alive client per server"
    )
    with tempfile.TemporaryDirectory() as workdir, running_peers(Path(workdir)) as peers:
        check_answers(peers)
        print(
            f"1. non-streamed, sequential: {CALLS} calls per variant in {ROUNDS} interleaved"
            f" rounds after {WARMUP} warm-up; the tool round is 2 model calls"
        )
        uvloop.run(non_streamed(peers))
        print(
            f"2. streamed: the time to the first text delta ({TTFT_CALLS} calls per variant),"
            f" then the rate of a {LONG_DELTAS}-delta answer (deltas / whole request time)"
        )
        uvloop.run(first_token(peers))
        uvloop.run(long_answer(peers))
        print(
            f"3. one-turn answers at concurrency {CONCURRENCY} (load generator in its own"
            f" process), {LOAD_WARMUP:g} s warm-up + {LOAD_SECONDS:g} s per run,"
            f" {LOAD_ROUNDS} alternating rounds; the fake's CPU is in each row"
        )
        under_load(peers)


if __name__ == "__main__":
    main()
