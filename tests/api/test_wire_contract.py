"""Answers built on the hot path hold to the documented wire models."""

from __future__ import annotations

import json

import pytest

from sidecar.api.models import ExecuteResponse
from sidecar.api.wire import json_bytes, to_wire
from sidecar.execution import Completed, Execution, Failed, FunctionCall, RequiresAction

OUTCOMES = [
    Completed({"currentDate": "2026-11-22T01:00:00.000Z", "nested": [1, 2.5, None, True]}),
    Failed("invalid_arguments", "missing required argument 'city'", "city"),
    Failed("upstream_timeout", "host 'x' did not answer within 5 s"),
    RequiresAction(FunctionCall("call_1", "lookup", '{"q": "x"}')),
]


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda outcome: type(outcome).__name__)
def test_every_outcome_matches_the_execute_response_model(
    outcome: Completed | Failed | RequiresAction,
) -> None:
    answer = to_wire(Execution("call_1", "lookup", outcome, 1.25))
    model = ExecuteResponse.model_validate_json(json_bytes(answer))
    assert model.status == outcome.status
    assert json.loads(model.model_dump_json(exclude_none=True)) == answer


def test_integers_past_64_bits_still_serialise() -> None:
    assert json.loads(json_bytes({"big": 2**70})) == {"big": 2**70}
