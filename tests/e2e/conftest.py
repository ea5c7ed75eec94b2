"""A real upstream for the end-to-end tests, shared by each module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.upstream import RecordingUpstream, serve_recording_upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with serve_recording_upstream() as running:
        yield running
