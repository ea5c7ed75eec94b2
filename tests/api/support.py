"""Helpers shared by the HTTP API tests: settings, the app client, secret checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from sidecar.app import create_app
from sidecar.services import Services, open_services
from sidecar.settings import Settings

__all__ = [
    "assert_error",
    "function_tool",
    "http_tool",
    "make_settings",
    "open_client",
    "open_client_and_services",
]


def make_settings(root: Path, **overrides: Any) -> Settings:
    """Settings that keep every file under `root` and let the outbound guard reach 127.0.0.1."""
    options: dict[str, Any] = {
        "state_dir": root / "state",
        "manifests_dir": root / "manifests",
        "outbound_allow": ("127.0.0.1",),
        # Code tools have their own tests; the rest need no sandbox processes.
        "sandbox_enabled": False,
        **overrides,
    }
    return Settings(**options)


@asynccontextmanager
async def open_client(
    settings: Settings, services: Services | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of the app, its lifespan running for the duration of the block.

    Given `services`, the app uses them instead of opening its own.
    """
    app = create_app(settings, services)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield client


@asynccontextmanager
async def open_client_and_services(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """An in-process client of the app and the services it uses, opened here (as `serve` does)."""
    async with (
        open_services(settings) as services,
        open_client(settings, services) as client,
    ):
        yield client, services


def assert_error(
    response: httpx.Response, status: int, *, code: str | None = None
) -> dict[str, Any]:
    """The `error` object of an error answer, after checking the status and the shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"type", "code", "message", "param"}
    assert body["message"] == error["message"]
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def http_tool(key: str, url: str, **http: Any) -> dict[str, Any]:
    """A `/v2/tools` body for an HTTP tool; `http` may hold `arguments` and blueprint fields."""
    arguments = http.pop("arguments", {})
    return {
        "type": "http",
        "key": key,
        "description": f"The {key} tool",
        "http": {"blueprint": {"url": url, "method": "GET", **http}, "arguments": arguments},
    }


def function_tool(key: str, name: str | None = None, **function: Any) -> dict[str, Any]:
    """A `/v2/tools` body for a function tool."""
    parameters = function.pop(
        "parameters",
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    )
    return {
        "type": "function",
        "key": key,
        "description": f"The {key} tool",
        "function": {"name": name or key, "parameters": parameters, **function},
    }
