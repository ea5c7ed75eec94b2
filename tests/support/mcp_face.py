"""Helpers for tests of the sidecar's MCP face: a working directory, clients, result text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from tests.support.fake_providers import FakeProvider
from tests.support.upstream import RecordingUpstream

__all__ = [
    "UPSTREAM_TOKEN",
    "http_client",
    "initialize_request",
    "prepare_respond_workdir",
    "prepare_workdir",
    "result_json",
    "result_text",
]

UPSTREAM_TOKEN = "mcp-face-token-7Qx9+/=secret"


def initialize_request(client_name: str) -> dict[str, Any]:
    """A raw 2025-era `initialize` JSON-RPC request."""
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": client_name, "version": "0"},
        },
    }


def prepare_workdir(root: Path, upstream_url: str) -> Path:
    """Manifests (an HTTP tool sending `UPSTREAM_TOKEN`, a function tool) and a variables file.

    Returns the variables file.
    """
    tools = root / "manifests" / "tools"
    tools.mkdir(parents=True)
    echo = {
        "type": "http",
        "key": "echo_secret",
        "display_name": "Echo with a token",
        "description": "Sends the token to the echo upstream and returns what it saw.",
        "http": {
            "blueprint": {
                "url": upstream_url + "/mcp-face/{{word}}",
                "method": "GET",
                "headers": {"Authorization": "Bearer {{UPSTREAM_TOKEN}}"},
                "timeout": 10,
            },
            "arguments": {"word": {"type": "string", "description": "A word for the path"}},
        },
    }
    hand_back = {
        "type": "function",
        "key": "ask_the_user",
        "description": "Run by the caller.",
        "function": {"name": "ask_the_user", "parameters": {"type": "object", "properties": {}}},
    }
    (tools / "face.yaml").write_text(yaml.safe_dump({"tools": [echo, hand_back]}), "utf-8")
    variables = root / "mcp-variables.yaml"
    variables.write_text(
        yaml.safe_dump(
            {"UPSTREAM_TOKEN": {"secret": True, "value": UPSTREAM_TOKEN}, "greeting": "hello"}
        ),
        "utf-8",
    )
    variables.chmod(0o600)
    return variables


CLERK = {
    "key": "clerk",
    "description": "Looks things up for you",
    "instructions": "You are a clerk.",
    "model": "chat/m",
    "settings": {
        "tools": [
            {"type": "http", "key": "echo_secret", "requires_approval": True},
            {"type": "http", "key": "slow_lookup"},
            {"type": "current_date"},
        ]
    },
}


def prepare_respond_workdir(
    root: Path, upstream: RecordingUpstream, fake: FakeProvider
) -> dict[str, str]:
    """Manifests (tools, the clerk agent), the variables file and the providers file: the
    environment of a sidecar that runs them, with `chat/m` as `respond`'s default model."""
    variables = prepare_workdir(root, upstream.base_url)
    slow = {
        "type": "http",
        "key": "slow_lookup",
        "description": "A lookup that takes its time",
        "http": {"blueprint": {"url": upstream.base_url + "/slow?seconds=30", "method": "GET"}},
    }
    (root / "manifests" / "tools" / "slow.yaml").write_text(yaml.safe_dump(slow), "utf-8")
    (root / "manifests" / "agents").mkdir()
    (root / "manifests" / "agents" / "clerk.yaml").write_text(yaml.safe_dump(CLERK), "utf-8")
    providers = root / "providers.yaml"
    entry = {"name": "chat", "wire": "openai-chat", "base_url": fake.base_url}
    providers.write_text(json.dumps({"providers": [entry]}), "utf-8")
    return {
        "SIDECAR_STATE_DIR": str(root / "state"),
        "SIDECAR_MANIFESTS_DIR": str(root / "manifests"),
        "SIDECAR_MCP_VARIABLES_FILE": str(variables),
        "SIDECAR_PROVIDERS_FILE": str(providers),
        "SIDECAR_RESPOND_MODEL": "chat/m",
        "SIDECAR_OUTBOUND_ALLOW": "127.0.0.1",
        "SIDECAR_LOG_FORMAT": "json",
    }


@asynccontextmanager
async def http_client(
    url: str,
    *,
    key: str | None,
    mode: str,
    headers: dict[str, str] | None = None,
    **options: Any,
) -> AsyncIterator[Client]:
    """An MCP client of `url` over Streamable HTTP, sending `key` as a bearer token and
    `headers` on every request; `options` go to the `Client` (callbacks)."""
    sent = {**(headers or {}), **({"Authorization": f"Bearer {key}"} if key else {})}
    timeout = httpx2.Timeout(30, read=60)
    async with (
        httpx2.AsyncClient(headers=sent, timeout=timeout) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, **options) as client,
    ):
        yield client


def result_text(result: CallToolResult) -> str:
    """The text of a result's one text block."""
    assert len(result.content) == 1, result
    block = result.content[0]
    assert isinstance(block, TextContent), result
    return block.text


def result_json(result: CallToolResult) -> Any:
    """A completed result's text, parsed."""
    assert not result.is_error, result_text(result)
    return json.loads(result_text(result))
