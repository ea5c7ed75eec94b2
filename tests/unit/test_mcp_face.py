"""The MCP face in process: the catalog's rules and the mapping of outcomes to MCP results."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from sidecar.execution import Completed, Failed, FunctionCall, RequiresAction
from sidecar.mcp.catalog import (
    Catalog,
    EntryHandler,
    FaceEntry,
    FixedEntries,
    PlatformTools,
    RegisteredTools,
    describe,
    expanders_for,
)
from sidecar.mcp.server import McpServer, build_mcp_server, to_result
from sidecar.registry.definitions import parse_definition
from sidecar.services import Services, open_services
from tests.api.support import function_tool, http_tool, make_settings
from tests.support.mcp_face import result_json, result_text
from tests.support.secrets import assert_no_secret
from tools.base import JsonObject, Secret, VariableValue

pytestmark = pytest.mark.anyio

SECRET = "face-secret-value-8842"
VARIABLES: dict[str, VariableValue] = {"TOKEN": Secret(SECRET), "plain": "visible"}


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with open_services(make_settings(tmp_path)) as opened:
        yield opened


def face(services: Services, *extra: FaceEntry) -> McpServer:
    registry = services.registry
    catalog = Catalog(
        [
            PlatformTools(registry.builtins),
            RegisteredTools(registry, expanders_for(registry)),
            FixedEntries(extra),
        ]
    )
    return build_mcp_server(executor=services.executor, catalog=catalog, variables=VARIABLES)


def fixed(name: str, handler: EntryHandler) -> FaceEntry:
    schema: JsonObject = {"type": "object", "properties": {"q": {"type": "string"}}}
    return FaceEntry(name, f"The {name} entry", schema, handler)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_fixed_entry_is_answered_by_its_handler_with_the_face_variables(
    services: Services, mode: str
) -> None:
    seen: list[tuple[JsonObject, Mapping[str, VariableValue]]] = []

    async def answer(arguments: JsonObject, variables: Mapping[str, VariableValue]) -> Completed:
        seen.append((arguments, variables))
        return Completed({"echo": arguments["q"]})

    async with Client(face(services, fixed("respond_like", answer)), mode=mode) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        result = await client.call_tool("respond_like", {"q": "hi"})
    assert listed["respond_like"].description == "The respond_like entry"
    assert result.structured_content == {"echo": "hi"}
    assert seen == [({"q": "hi"}, VARIABLES)]


async def test_a_crashing_handler_is_an_error_result_and_a_redacted_log_line(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    async def crash(arguments: JsonObject, variables: Mapping[str, VariableValue]) -> Completed:
        raise RuntimeError(f"broken with {SECRET}")

    async with Client(face(services, fixed("crash", crash))) as client:
        result = await client.call_tool("crash", {})
        after = await client.call_tool("current_date", {})
    assert result.is_error
    assert result_text(result).startswith("internal_error: ")
    assert not after.is_error, "the face keeps serving"
    logs = capsys.readouterr().err
    assert "mcp.call_crashed" in logs
    assert_no_secret(result.model_dump_json() + logs, SECRET)


async def test_an_earlier_source_keeps_its_name(services: Services) -> None:
    async def shadow(arguments: JsonObject, variables: Mapping[str, VariableValue]) -> Completed:
        return Completed("shadow")

    async with Client(face(services, fixed("current_date", shadow))) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        result = await client.call_tool("current_date", {})
    assert names.count("current_date") == 1
    assert "currentDate" in result_json(result)


async def test_handed_back_tools_are_neither_listed_nor_callable(services: Services) -> None:
    await services.registry.create(parse_definition(function_tool("hand_back")))
    answer = {"name": "verdict", "schema": {"type": "object"}}
    verdict = {"type": "json_schema", "key": "verdict", "json_schema": answer}
    await services.registry.create(parse_definition(verdict))
    async with Client(face(services)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        results = [await client.call_tool(name, {}) for name in ("hand_back", "verdict")]
    assert not {"hand_back", "verdict"} & names
    for result in results:
        assert result.is_error
        assert result_text(result).startswith("tool_not_found: ")


async def test_registered_tools_are_called_by_key_not_by_id(services: Services) -> None:
    stored = await services.registry.create(
        parse_definition(http_tool("by_key", "http://127.0.0.1:9/never"))
    )
    async with Client(face(services)) as client:
        by_id = await client.call_tool(stored.tool_id, {})
    assert by_id.is_error
    assert result_text(by_id).startswith("tool_not_found: ")


async def test_a_cursor_the_face_never_gave_is_invalid_params(services: Services) -> None:
    async with Client(face(services), mode="legacy") as client:
        with pytest.raises(MCPError) as raised:
            await client.list_tools(cursor="page-2")
    assert raised.value.code == INVALID_PARAMS


async def test_a_listing_that_fails_is_a_clean_protocol_error(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken:
        async def entries(self) -> list[FaceEntry]:
            raise RuntimeError(f"store down, {SECRET}")

        async def find(self, name: str) -> FaceEntry | None:
            return None

    server = build_mcp_server(
        executor=services.executor, catalog=Catalog([Broken()]), variables=VARIABLES
    )
    async with Client(server, mode="legacy") as client:
        with pytest.raises(MCPError) as raised:
            await client.list_tools()
    assert raised.value.code == INTERNAL_ERROR
    assert "see the logs" in raised.value.message
    logs = capsys.readouterr().err
    assert "mcp.list_failed" in logs
    assert_no_secret(str(raised.value) + logs, SECRET)


def test_a_result_that_is_not_an_object_is_text_only() -> None:
    result = to_result(Completed([1, "two"]))
    assert result_text(result) == '[1, "two"]'
    assert result.structured_content is None
    assert not result.is_error


def test_a_failure_is_an_error_result_with_code_and_message() -> None:
    result = to_result(Failed("upstream_timeout", "the upstream did not answer"))
    assert result.is_error
    assert result_text(result) == "upstream_timeout: the upstream did not answer"


def test_a_hand_back_is_an_error_result() -> None:
    result = to_result(RequiresAction(FunctionCall("call_1", "f", "{}")))
    assert result.is_error
    assert result_text(result).startswith("requires_action: ")


def test_a_description_is_never_empty() -> None:
    assert describe("  ", "Lookup", "http") == "Lookup (http tool)"
    assert describe("Finds things.", "Lookup", "http") == "Finds things."
