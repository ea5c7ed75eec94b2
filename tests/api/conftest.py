"""Fixtures of the HTTP API tests: the app behind an in-process client, a real upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from sidecar.settings import Settings
from tests.api.reflecting_upstream import ReflectingUpstream, serve_reflecting_upstream
from tests.api.support import make_settings, open_client


@pytest.fixture(scope="session")
def upstream() -> Iterator[ReflectingUpstream]:
    """The echo server, run by uvicorn in a thread for the whole session."""
    with serve_reflecting_upstream() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(settings) as client:
        yield client
