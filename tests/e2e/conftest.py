"""Real peers for the end-to-end tests, shared by each module's tests: an upstream for
HTTP tools and scripted fake model providers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_providers import FakeProvider, serve_fake_providers
from tests.support.upstream import RecordingUpstream, serve_recording_upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with serve_recording_upstream() as running:
        yield running


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    """Scripted fake providers for the three wires, on loopback."""
    with serve_fake_providers() as running:
        yield running
