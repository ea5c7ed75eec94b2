"""A real sidecar in front of the fake providers, read with plain httpx (RESPONSES.md §5-§6).

providers_env        a providers file naming one provider per wire, keys by `api_key_env`
post / stream        a response created as JSON, or as server-sent events read by hand
Streamed             a stream's status, headers, raw text and parsed events
stream_problems      what breaks §6 in a stream: sequence numbers, order, ids, exactly one
                     terminal event, `[DONE]`, deltas that add up to their `.done`
provider_history     what a fake provider was asked, as neutral tuples whatever its wire
assert_clean         no piece (nor encoding) of a secret in texts and in the sidecar's log
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.fake_providers import FakeProvider
from tests.support.secrets import assert_no_piece, assert_no_secret
from tests.support.sidecar_process import RunningSidecar, run_sidecar

__all__ = [
    "TERMINAL",
    "WIRES",
    "Streamed",
    "WireInfo",
    "assert_clean",
    "post",
    "provider_history",
    "providers_env",
    "stream",
    "stream_problems",
]

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


@dataclass(frozen=True)
class WireInfo:
    """One provider of the providers file: its name, wire, the fake's path, a model string."""

    provider: str
    wire: str
    path: str
    key_env: str

    @property
    def model(self) -> str:
        return f"{self.provider}/model-{self.provider}"


WIRES: dict[str, WireInfo] = {
    "chat": WireInfo("chat", "openai-chat", "/v1/chat/completions", "E2E_CHAT_KEY"),
    "resp": WireInfo("resp", "openai-responses", "/v1/responses", "E2E_RESP_KEY"),
    "claude": WireInfo("claude", "anthropic", "/v1/messages", "E2E_CLAUDE_KEY"),
}


@contextmanager
def responses_sidecar(
    workdir: Path, fake: FakeProvider, keys: Mapping[str, str]
) -> Iterator[RunningSidecar]:
    """A running sidecar whose providers (`chat`, `resp`, `claude`) are the fake's wires."""
    with run_sidecar(workdir, providers_env(workdir, fake, keys)) as running:
        yield running


def providers_env(workdir: Path, fake: FakeProvider, keys: Mapping[str, str]) -> dict[str, str]:
    """The sidecar's environment: a providers file for the three wires and their keys.

    The Anthropic adapter appends `/v1/messages` to its base URL, so it gets the fake's
    origin; the OpenAI wires append `/chat/completions` and `/responses` to `.../v1`.
    """
    entries = [
        {
            "name": info.provider,
            "wire": info.wire,
            "base_url": fake.origin if info.wire == "anthropic" else fake.base_url,
            "api_key_env": info.key_env,
        }
        for info in WIRES.values()
    ]
    path = workdir / "providers.yaml"
    path.write_text(json.dumps({"providers": entries}))  # JSON is YAML too
    return {
        "SIDECAR_PROVIDERS_FILE": str(path),
        "SIDECAR_SANDBOX_ENABLED": "false",
        **{WIRES[name].key_env: key for name, key in keys.items()},
    }


@dataclass
class Streamed:
    """A streamed answer: its status, headers and body, and the events read from it."""

    status_code: int
    headers: httpx.Headers
    text: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    done: bool = False  # `data: [DONE]` came
    stray: list[str] = field(default_factory=list)  # data that was not JSON

    @property
    def types(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The data of every event of one type."""
        return [data for name, data in self.events if name == kind]

    @property
    def terminal(self) -> dict[str, Any]:
        """The terminal event's data (the last event must be one)."""
        name, data = self.events[-1]
        assert name in TERMINAL, f"the stream ends with {name!r}, not a terminal event"
        return data

    @property
    def response(self) -> dict[str, Any]:
        """The response object of the terminal event."""
        response: dict[str, Any] = self.terminal["response"]
        return response

    def text_deltas(self) -> str:
        return "".join(data["delta"] for data in self.of("response.output_text.delta"))


def post(client: httpx.Client, body: dict[str, Any], path: str = "/v1/responses") -> httpx.Response:
    return client.post(path, json=body)


def read_events(lines: Iterable[str], into: Streamed) -> None:
    """Parse `event:` / `data:` lines (blank line dispatches) into `into`."""
    event: str = ""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                _dispatch(event, "\n".join(data), into)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        _dispatch(event, "\n".join(data), into)


def _dispatch(event: str, data: str, into: Streamed) -> None:
    if data == "[DONE]":
        into.done = True
        return
    try:
        parsed = json.loads(data)
    except ValueError:
        into.stray.append(data)
        return
    into.events.append((event or str(parsed.get("type")), parsed))


def stream(client: httpx.Client, body: dict[str, Any], path: str = "/v1/responses") -> Streamed:
    """POST with `stream: true` and read the whole answer (SSE, or an error body)."""
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        text = "".join(response.iter_text())
    streamed = Streamed(response.status_code, response.headers, text)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        read_events(text.split("\n"), streamed)
    return streamed


def stream_problems(streamed: Streamed) -> list[str]:
    """Every way the stream breaks RESPONSES.md §6 (empty when it keeps it)."""
    problems: list[str] = []
    events = streamed.events
    if streamed.stray:
        problems.append(f"data that is not JSON: {streamed.stray!r}")
    if not events:
        return [*problems, "no events"]
    for position, (name, data) in enumerate(events):
        if data.get("type") != name:
            problems.append(f"event {position}: `event: {name}` but type {data.get('type')!r}")
        if data.get("sequence_number") != position:
            problems.append(
                f"event {position} ({name}): sequence_number {data.get('sequence_number')!r}"
            )
    types = [name for name, _ in events]
    if types[:2] != ["response.created", "response.in_progress"]:
        problems.append(f"the stream opens with {types[:2]!r}")
    terminals = [i for i, name in enumerate(types) if name in TERMINAL]
    if len(terminals) != 1 or terminals[0] != len(types) - 1:
        problems.append(f"terminal events at {terminals!r} of {len(types)} events")
    if not streamed.done:
        problems.append("no `data: [DONE]` at the end")
    elif not streamed.text.rstrip().endswith("data: [DONE]"):
        problems.append("something follows `data: [DONE]`")
    if "error" in types:
        problems.append("an `error` event (an error after the start is a response.failed)")
    created = events[0][1].get("response", {}).get("id")
    if terminals and events[-1][1].get("response", {}).get("id") != created:
        problems.append("the terminal event's response id is not the one created")
    problems += _item_problems(events)
    return problems


def _item_problems(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    problems: list[str] = []
    added: dict[int, tuple[int, dict[str, Any]]] = {}
    done: dict[int, tuple[int, dict[str, Any]]] = {}
    deltas: dict[int, list[str]] = {}
    arguments: dict[int, list[str]] = {}
    text_done: dict[int, int] = {}
    part_added: dict[int, int] = {}
    part_done: dict[int, int] = {}
    for position, (name, data) in enumerate(events):
        index = data.get("output_index")
        if not isinstance(index, int):
            if "output_index" in data or name.startswith("response.output_item."):
                problems.append(f"{name} (event {position}): output_index {index!r}")
            continue
        if name == "response.output_item.added":
            if index in added:
                problems.append(f"output_index {index} added twice")
            if index != len(added):
                problems.append(f"output_index {index} added after {len(added)} items")
            added[index] = (position, data["item"])
            continue
        if name == "response.output_item.done":
            if index in done:
                problems.append(f"output_index {index} done twice")
            done[index] = (position, data["item"])
            continue
        if index not in added or index in done:
            problems.append(f"{name} (event {position}) outside its item {index}")
            continue
        if data.get("item_id") != added[index][1].get("id"):
            problems.append(f"{name} (event {position}) names item {data.get('item_id')!r}")
        match name:
            case "response.content_part.added":
                part_added[index] = position
            case "response.output_text.delta":
                if index not in part_added:
                    problems.append(f"a text delta before its content part (event {position})")
                deltas.setdefault(index, []).append(data["delta"])
            case "response.output_text.done":
                text_done[index] = position
                if "".join(deltas.get(index, [])) != data["text"]:
                    problems.append(f"the text deltas of item {index} do not add up to its text")
            case "response.content_part.done":
                part_done[index] = position
                if index not in text_done:
                    problems.append(f"content_part.done before output_text.done ({index})")
            case "response.function_call_arguments.delta":
                arguments.setdefault(index, []).append(data["delta"])
            case "response.function_call_arguments.done":
                pieces = arguments.get(index)
                if pieces is not None and "".join(pieces) != data["arguments"]:
                    problems.append(f"the argument deltas of item {index} do not add up")
    for index, (_, item) in added.items():
        if index not in done:
            problems.append(f"output_index {index} added, never done")
            continue
        final = done[index][1]
        if final.get("id") != item.get("id") or final.get("type") != item.get("type"):
            problems.append(f"output_index {index}: added {item!r} but done {final!r}")
        if index in part_added and index not in part_done:
            problems.append(f"output_index {index}: a content part never done")
    for index in done:
        if index not in added:
            problems.append(f"output_index {index} done, never added")
    if events and events[-1][0] in TERMINAL:
        output = events[-1][1].get("response", {}).get("output", [])
        finals = [done[i][1] for i in sorted(done)]
        if output != finals:
            problems.append("the terminal response's output is not the items done")
    return problems


# What a fake provider was asked, whatever its wire.


def provider_history(wire: str, body: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The conversation a provider was sent, as neutral tuples:

    ("system", text), ("user", text), ("image", url), ("assistant", text),
    ("call", call_id, name, arguments as parsed JSON), ("output", call_id, output text),
    ("reasoning", summary, opaque or None).
    """
    match wire:
        case "chat":
            return _chat_history(body)
        case "resp":
            return _responses_history(body)
        case "claude":
            return _messages_history(body)
    raise ValueError(wire)


def _chat_history(body: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for message in body["messages"]:
        role = message["role"]
        content = message.get("content")
        if role == "tool":
            out.append(("output", message["tool_call_id"], content))
            continue
        if isinstance(content, str) and (content or role != "assistant"):
            out.append((role, content))
        elif isinstance(content, list):
            for part in content:
                if part["type"] == "text":
                    out.append((role, part["text"]))
                else:
                    out.append(("image", part["image_url"]["url"]))
        for call in message.get("tool_calls") or []:
            function = call["function"]
            out.append(("call", call["id"], function["name"], json.loads(function["arguments"])))
    return out


def _responses_history(body: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if body.get("instructions"):
        out.append(("system", body["instructions"]))
    for item in body["input"]:
        match item["type"]:
            case "message":
                role = item["role"]
                for part in item["content"]:
                    if part["type"] == "input_image":
                        out.append(("image", part["image_url"]))
                    else:
                        out.append((role, part["text"]))
            case "function_call":
                arguments = json.loads(item["arguments"])
                out.append(("call", item["call_id"], item["name"], arguments))
            case "function_call_output":
                out.append(("output", item["call_id"], item["output"]))
            case "reasoning":
                summary = "".join(part["text"] for part in item.get("summary") or [])
                out.append(("reasoning", summary, item.get("encrypted_content")))
            case other:
                out.append((other,))
    return out


def _messages_history(body: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if body.get("system"):
        system = body["system"]
        text = system if isinstance(system, str) else "".join(b["text"] for b in system)
        out.append(("system", text))
    for message in body["messages"]:
        role = message["role"]
        content = message["content"]
        if isinstance(content, str):
            out.append((role, content))
            continue
        for block in content:
            match block["type"]:
                case "text":
                    out.append((role, block["text"]))
                case "image":
                    source = block["source"]
                    out.append(("image", source.get("url") or source.get("data")))
                case "tool_use":
                    out.append(("call", block["id"], block["name"], block["input"]))
                case "tool_result":
                    out.append(("output", block["tool_use_id"], block.get("content", "")))
                case "thinking":
                    out.append(("reasoning", block["thinking"], block.get("signature")))
                case other:
                    out.append((other,))
    return out


def assert_clean(running: RunningSidecar, secrets: Iterable[str], *texts: str) -> None:
    """No secret (nor a piece, nor an encoding of one) in `texts` or the sidecar's log."""
    places = [*((f"answer {n}", text) for n, text in enumerate(texts)), ("log", running.logs())]
    for secret in secrets:
        for where, text in places:
            assert_no_piece(text, secret, where=where)
            assert_no_secret(text, secret, where=where)
