"""The `orq-ai-sdk` against a running sidecar's tool registry: what the SDK sends, as sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from orq_ai_sdk import Orq, models

from tests.support.sidecar_process import RunningSidecar, run_sidecar

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "rating": {"type": "integer"}},
    "required": ["title", "rating"],
}


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSidecar]:
    with run_sidecar(tmp_path_factory.mktemp("orq-sdk-tools")) as running:
        yield running


@pytest.fixture
def orq(sidecar: RunningSidecar) -> Iterator[Orq]:
    with Orq(api_key="unused", server_url=sidecar.base_url) as client:
        yield client


def plain(model: Any) -> dict[str, Any]:
    """What the SDK parsed, as JSON (its models dump by their wire aliases)."""
    dumped: dict[str, Any] = json.loads(model.model_dump_json(by_alias=True))
    return dumped


def test_the_sdk_creates_lists_updates_and_deletes_a_json_schema_tool(orq: Orq) -> None:
    created = orq.tools.create(
        request=models.JSONSchemaTool(
            type="json_schema",
            key="film_review",
            path="Default",
            description="A film review as data",
            json_schema=models.RequestBodyJSONSchema(
                name="film_review",
                description="The review",
                schema_=models.RequestBodySchema(**SCHEMA),
                strict=True,
            ),
        )
    )
    tool = plain(created)
    assert tool["type"] == "json_schema"
    assert tool["json_schema"]["schema"]["required"] == ["title", "rating"]
    tool_id = tool["_id"]

    page = orq.tools.list(limit=50)  # the SDK sends `limit=50.0`
    assert tool_id in [entry["_id"] for entry in plain(page)["data"]]

    orq.tools.update(
        tool_id=tool_id,
        request_body=models.UpdateJSONSchemaTool(
            type="json_schema",
            description="A film review, rating required",
            json_schema=models.UpdateToolRequestBodyJSONSchema(
                name="film_review",
                description="The review",
                schema_=models.UpdateToolRequestBodySchema(**{**SCHEMA, "required": ["rating"]}),
            ),
        ),
    )
    fetched = plain(orq.tools.retrieve(tool_id=tool_id))
    assert fetched["description"] == "A film review, rating required"
    assert fetched["json_schema"]["schema"]["required"] == ["rating"]

    versions = plain(orq.tools.list_versions(tool_id=tool_id))["data"]
    assert len(versions) == 2
    first = plain(orq.tools.get_version(tool_id=tool_id, version_id=versions[-1]["_id"]))
    shown = json.dumps(first)
    assert "A film review as data" in shown  # the record of the tool as it was first
    assert "rating required" not in shown

    orq.tools.delete(tool_id=tool_id)
    assert tool_id not in [entry["_id"] for entry in plain(orq.tools.list())["data"]]


def test_the_sdk_reads_a_missing_tool_as_its_not_found_error(orq: Orq) -> None:
    missing = "tool_01M5WYJZMGRWP2NC4GEBX52RK4"
    with pytest.raises(models.ErrorResponse) as raised:
        orq.tools.retrieve(tool_id=missing)
    assert raised.value.status_code == 404
    assert missing in raised.value.data.message
