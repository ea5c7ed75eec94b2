"""A real upstream for the end-to-end tests, shared by each module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.upstream import Upstream, serve_upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with serve_upstream() as running:
        yield running
