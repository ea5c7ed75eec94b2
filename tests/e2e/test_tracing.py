"""Traces end to end: a real `sidecar serve` exporting over OTLP/HTTP to a receiver on
loopback, with the standard OTEL_* variables. The spans nest under the caller's
`traceparent`, carry the GenAI attributes, and no secret is in any byte exported."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import yaml

from tests.support.fake_providers import FakeProvider, Status, Text
from tests.support.mcp_face import http_client, result_json
from tests.support.mcp_process import stdio_command
from tests.support.otlp import ReceivedSpan, TraceReceiver, serve_trace_receiver
from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import RunningSidecar, run_sidecar

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
NAME_SECRET = "name-secret-" + "Gx4Rk8Wm2Qz7"
PROVIDER_KEY = "sk-chat-" + "Lp3Vn9Ty6Hd1"
SERVER, CLIENT = 2, 3  # OTLP span kinds
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def receiver() -> Iterator[TraceReceiver]:
    with serve_trace_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def sidecar(
    receiver: TraceReceiver, fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSidecar]:
    workdir = tmp_path_factory.mktemp("tracing")
    tools = workdir / "manifests" / "tools"
    tools.mkdir(parents=True)
    command, args = stdio_command()
    server = {
        "type": "mcp",
        "key": "local",
        "description": "A local MCP server",
        "mcp": {
            "connection_type": "stdio",
            "command": command,
            "args": args,
            # The sidecar runs in the work directory: the server's module is the repository's.
            "env": {"UPSTREAM_NAME": "{{NAME}}", "PYTHONPATH": str(REPOSITORY)},
        },
    }
    (tools / "local.yaml").write_text(yaml.safe_dump(server))
    providers = workdir / "providers.yaml"
    entry = {"name": "chat", "wire": "openai-chat", "base_url": fake.base_url,
             "api_key_env": "CHAT_KEY"}  # fmt: skip
    providers.write_text(json.dumps({"providers": [entry]}))
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "sidecar-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "SIDECAR_PROVIDERS_FILE": str(providers),
        "SIDECAR_SANDBOX_ENABLED": "false",
        "CHAT_KEY": PROVIDER_KEY,
    }
    with run_sidecar(workdir, env) as running:
        yield running


def _spans(
    receiver: TraceReceiver, prefix: str, trace_id: str, count: int = 1
) -> list[ReceivedSpan]:
    deadline = time.monotonic() + 20
    while True:
        spans = [span for span in receiver.named(prefix) if span.trace_id == trace_id]
        if len(spans) >= count or time.monotonic() > deadline:
            assert len(spans) == count, [span.name for span in receiver.spans]
            return spans
        time.sleep(0.05)


def _one(receiver: TraceReceiver, prefix: str, trace_id: str) -> dict[str, object]:
    return _spans(receiver, prefix, trace_id)[0].__dict__


def test_a_tool_call_is_traced_under_the_callers_traceparent(
    sidecar: RunningSidecar, receiver: TraceReceiver
) -> None:
    answer = httpx.post(
        f"{sidecar.base_url}/v1/tools/execute",
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
        json={
            "tool": {"type": "mcp", "key": "local", "tool_id": "whoami"},
            "arguments": {},
            "variables": {"NAME": {"secret": True, "value": NAME_SECRET}},
        },
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    request = _one(receiver, "POST /v1/tools/execute", CALLER_TRACE)
    tool = _one(receiver, "execute_tool whoami", CALLER_TRACE)
    upstream = _one(receiver, "tools/call whoami", CALLER_TRACE)

    assert request["parent_span_id"] == CALLER_SPAN
    assert request["kind"] == SERVER
    assert request["service_name"] == "sidecar-under-test"
    assert request["attributes"] == {
        "http.request.method": "POST",
        "url.path": "/v1/tools/execute",
        "http.route": "/v1/tools/execute",
        "http.response.status_code": 200,
    }
    assert tool["parent_span_id"] == request["span_id"]
    attributes = tool["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["gen_ai.tool.name"] == "whoami"
    assert attributes["gen_ai.tool.type"] == "extension"
    assert attributes["sidecar.tool.kind"] == "mcp"
    assert attributes["sidecar.tool.status"] == "completed"
    assert upstream["parent_span_id"] == tool["span_id"]
    assert upstream["kind"] == CLIENT
    assert upstream["attributes"] == {
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": "whoami",
        "network.transport": "pipe",
        "server.address": Path(stdio_command()[0]).name,
    }
    for text in (receiver.raw(), answer.text, sidecar.logs()):
        assert_no_secret(text, NAME_SECRET)


def test_a_caller_that_does_not_sample_its_trace_gets_no_span_and_the_next_one_does(
    sidecar: RunningSidecar, receiver: TraceReceiver
) -> None:
    unsampled, sampled = "7" * 32, "8" * 32
    call = {
        "tool": {"type": "mcp", "key": "local", "tool_id": "whoami"},
        "arguments": {},
        "variables": {"NAME": {"secret": True, "value": NAME_SECRET}},
    }
    answers = []
    with httpx.Client(base_url=sidecar.base_url, timeout=60) as client:  # one connection
        for trace_id, flags in ((unsampled, "00"), (sampled, "01"), (unsampled, "00")):
            traceparent = {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-{flags}"}
            answer = client.post("/v1/tools/execute", headers=traceparent, json=call)
            assert answer.status_code == 200, answer.text
            answers.append(answer.text)
        # Without a traceparent, after requests not sampled, a request starts its own trace.
        assert client.get("/v2/tools").status_code == 200
    request = _one(receiver, "POST /v1/tools/execute", sampled)
    assert _one(receiver, "execute_tool whoami", sampled)["parent_span_id"] == request["span_id"]
    assert _one(receiver, "tools/call whoami", sampled)
    deadline = time.monotonic() + 20
    while not receiver.named("GET /v2/tools") and time.monotonic() < deadline:
        time.sleep(0.05)
    (listing,) = receiver.named("GET /v2/tools")
    assert listing.parent_span_id == ""
    assert listing.trace_id not in (unsampled, sampled)
    # The spans are exported in the order they end: the sampled ones came, the others not,
    # not even as traces of their own.
    assert [span.name for span in receiver.spans if span.trace_id == unsampled] == []
    assert all(span.parent_span_id for span in receiver.named("execute_tool whoami"))
    for text in (receiver.raw(), *answers, sidecar.logs()):
        assert_no_secret(text, NAME_SECRET)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("mode", "trace_id"),
    [("legacy", "5" * 32), ("auto", "6" * 32)],  # the 2025 revision, then the 2026 one
)
async def test_a_tool_called_over_mcp_is_a_child_of_the_request_that_carried_it(
    sidecar: RunningSidecar, receiver: TraceReceiver, mode: str, trace_id: str
) -> None:
    traceparent = {"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"}
    async with http_client(
        f"{sidecar.base_url}/mcp", key=None, mode=mode, headers=traceparent
    ) as client:
        for _ in range(3):
            assert "currentDate" in result_json(await client.call_tool("current_date", {}))
    tools = _spans(receiver, "execute_tool current_date", trace_id, count=3)
    deadline = time.monotonic() + 20
    while True:  # a request's span ends, and is exported, after its tool's
        requests = {span.span_id: span for span in receiver.named("POST /mcp")}
        parents = [requests.get(tool.parent_span_id) for tool in tools]
        if all(parents) or time.monotonic() > deadline:
            break
        await anyio.sleep(0.05)
    # Each call is under its own request, not under the one that opened the session.
    assert all(parent is not None and parent.trace_id == trace_id for parent in parents)
    assert len({tool.parent_span_id for tool in tools}) == 3


def test_a_model_turn_is_traced_with_the_genai_attributes_and_counted(
    sidecar: RunningSidecar, receiver: TraceReceiver, fake: FakeProvider
) -> None:
    fake.reset()
    fake.reply(Text("Hello from the fake"))
    trace_id = "5" * 32
    answer = httpx.post(
        f"{sidecar.base_url}/v1/responses",
        headers={"traceparent": f"00-{trace_id}-{'6' * 16}-01"},
        json={"model": "chat/m-traced", "input": "hi"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    request = _one(receiver, "POST /v1/responses", trace_id)
    chat = _one(receiver, "chat m-traced", trace_id)
    assert chat["parent_span_id"] == request["span_id"]
    assert chat["kind"] == CLIENT
    attributes = chat["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "m-traced"
    assert attributes["gen_ai.usage.input_tokens"] == 20
    assert attributes["gen_ai.usage.output_tokens"] == 10
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]

    metrics = httpx.get(f"{sidecar.base_url}/metrics", timeout=30).text
    labels = 'provider="chat",model="m-traced"'
    assert f'sidecar_model_calls_total{{{labels},outcome="completed"}} 1' in metrics
    assert f'sidecar_model_tokens_total{{{labels},type="input"}} 20' in metrics
    assert f'sidecar_model_tokens_total{{{labels},type="output"}} 10' in metrics
    for text in (receiver.raw(), answer.text, metrics, sidecar.logs()):
        assert_no_secret(text, PROVIDER_KEY)


def test_a_failed_provider_call_fails_its_span_and_counts_a_fallback(
    sidecar: RunningSidecar, receiver: TraceReceiver, fake: FakeProvider
) -> None:
    fake.reset()
    fake.reply(Status(400, message=f"bad request for key {PROVIDER_KEY}"), Text("From the backup"))
    trace_id = "7" * 32
    answer = httpx.post(
        f"{sidecar.base_url}/v1/responses",
        headers={"traceparent": f"00-{trace_id}-{'8' * 16}-01"},
        json={"model": "chat/m-first", "input": "hi", "fallbacks": [{"model": "chat/m-backup"}]},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["output_text"] == "From the backup"
    (failed,) = _spans(receiver, "chat m-first", trace_id)
    (backup,) = _spans(receiver, "chat m-backup", trace_id)
    assert failed.status_code == 2  # ERROR
    assert failed.attributes["error.type"] == "provider_rejected"
    assert failed.status_message  # the provider's message, redacted (checked below)
    assert backup.status_code != 2
    assert backup.attributes["gen_ai.usage.output_tokens"] == 10
    metrics = httpx.get(f"{sidecar.base_url}/metrics", timeout=30).text
    assert 'sidecar_model_fallbacks_total{provider="chat",model="m-first"} 1' in metrics
    assert (
        'sidecar_model_calls_total{provider="chat",model="m-first",outcome="provider_rejected"} 1'
        in metrics
    )
    for text in (receiver.raw(), answer.text, metrics, sidecar.logs()):
        assert_no_secret(text, PROVIDER_KEY)
