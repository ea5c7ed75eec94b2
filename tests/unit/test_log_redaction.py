"""Log lines are masked for every secret in play, nested calls included."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from sidecar.logs import configure_logging, get_logger, redacting
from sidecar.redaction import Redactor
from tests.support.logs import restored_logging

log = get_logger("tests.log_redaction")
OUTER = "outer-secret-abcdef"
INNER = "cdef-inner-secret"  # starts inside the outer one: masked together or not at all


@pytest.fixture(autouse=True)
def json_logs() -> Iterator[None]:
    with restored_logging():
        configure_logging(level="info", fmt="json")
        yield


def logged(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [json.loads(line)["text"] for line in capsys.readouterr().err.splitlines() if line]


def test_a_nested_context_masks_its_secrets_and_the_outer_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with redacting(Redactor([OUTER])):
        log.info("line", text=f"a {OUTER} b")
        with redacting(Redactor([INNER])):
            log.info(
                "line", text=f"{OUTER} and {INNER}; overlapping: outer-secret-abcdef-inner-secret"
            )
        log.info("line", text=f"{OUTER} after {INNER}")

    outer, nested, after = logged(capsys)
    assert outer == "a *** b"
    assert nested == "*** and ***; overlapping: ***"
    assert after == f"*** after {INNER}", "the inner secrets are masked only inside"


def test_a_context_without_secrets_keeps_the_outer_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with redacting(Redactor([OUTER])), redacting(Redactor.empty()):
        log.info("line", text=OUTER)

    assert logged(capsys) == ["***"]
