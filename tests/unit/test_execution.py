"""The Executor: deadlines, crashing tools, and redaction of results, errors and logs."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from cryptography.fernet import Fernet

from sidecar.database.sqlite import SqliteDatabase
from sidecar.deadlines import DeadlineWatch
from sidecar.errors import ToolNotFound
from sidecar.execution import Completed, Executor, Failed, RequiresAction, ToolCall
from sidecar.logs import configure_logging
from sidecar.metrics import Metrics
from sidecar.registry.crypto import SecretBox
from sidecar.registry.factory import HttpLimits, ToolFactory
from sidecar.registry.references import Builtin, Call, ToolExecutor
from sidecar.registry.registry import Registry
from sidecar.registry.store import REGISTRY_SCHEMA, ToolStore
from sidecar.templating import PlaceholderRenderer
from tests.support.logs import restored_logging
from tools.base import (
    Deadline,
    FunctionDefinition,
    HandBack,
    JsonObject,
    Secret,
    Tool,
    ToolContext,
    ToolError,
    ToolOutput,
    ToolResult,
    VariableValue,
)
from tools.current_date import CurrentDateTool

pytestmark = pytest.mark.anyio

SECRET = "xoxb-Sup3r/S3cret+Value"
B64 = base64.b64encode(SECRET.encode()).decode()
OPEN: JsonObject = {"type": "object", "properties": {}}


def definition(name: str) -> FunctionDefinition:
    return FunctionDefinition(name=name, description=f"The {name} test tool", parameters=OPEN)


def revealed(ctx: ToolContext) -> str:
    value = ctx.variables["token"]
    assert isinstance(value, Secret)
    return value.reveal()


class HangingTool:
    """Waits for an event nobody sets."""

    definition = definition("hang")

    def __init__(self) -> None:
        self.started = anyio.Event()

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolOutput:
        self.started.set()
        await anyio.Event().wait()
        raise AssertionError("unreachable")


class CrashingTool:
    """Fails with a plain exception whose text carries the secret."""

    definition = definition("crash")

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolOutput:
        raise RuntimeError(f"kaboom while holding {revealed(ctx)}")


class LeakyErrorTool:
    """Fails the call with a message that quotes the secret."""

    definition = definition("leaky_error")

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolOutput:
        raise ToolError(f"upstream refused token {revealed(ctx)}", code="upstream_refused")


class LeakyResultTool:
    """Puts the secret and its base64 into the result, and into a hand-back."""

    definition = definition("leaky_result")

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolOutput:
        secret = revealed(ctx)
        encoded = base64.b64encode(secret.encode()).decode()
        if arguments.get("hand_back"):
            return HandBack(name="leaky_result", arguments={"token": secret})
        return ToolResult(
            {
                "token": secret,
                "auth": f"Basic {encoded}",
                "nested": [{"deep": f"...{secret}..."}],
                "json": json.dumps({"token": secret}),
                "harmless": "kept as is",
            }
        )


@pytest.fixture
def tools() -> dict[str, Tool]:
    return {
        "current_date": CurrentDateTool(),
        "hang": HangingTool(),
        "crash": CrashingTool(),
        "leaky_error": LeakyErrorTool(),
        "leaky_result": LeakyResultTool(),
    }


@pytest.fixture
async def executor(tmp_path: Path, tools: dict[str, Tool]) -> AsyncIterator[ToolExecutor]:
    factory = ToolFactory(SecretBox(Fernet.generate_key()), HttpLimits())
    deadlines = DeadlineWatch(resolution=0.01)
    async with (
        SqliteDatabase(tmp_path / "registry.sqlite3", REGISTRY_SCHEMA) as database,
        httpx.AsyncClient() as http,
    ):
        registry = Registry(store=ToolStore(database), factory=factory, builtins=tools)
        yield Executor(
            resolver=registry,
            http=http,
            renderer=PlaceholderRenderer(),
            metrics=Metrics(),
            deadlines=deadlines,
            max_timeout=60.0,
        )
        deadlines.close()


def call(name: str, timeout: float | None = None, **arguments: Any) -> Call:
    variables: dict[str, VariableValue] = {"token": Secret(SECRET), "plain": "visible"}
    return ToolCall(Builtin(name), arguments, variables, call_id=f"call-{name}", timeout=timeout)


async def test_a_hanging_tool_times_out(executor: ToolExecutor) -> None:
    execution = await executor.execute(call("hang", timeout=0.05))
    assert execution.call_id == "call-hang"
    assert execution.tool == "hang"
    match execution.outcome:
        case Failed(code, message, _):
            assert code == "tool_timeout"
            assert "did not finish" in message
        case other:
            pytest.fail(f"expected a timeout, got {other}")


async def test_the_callers_deadline_wins_when_it_is_sooner(
    executor: ToolExecutor, tools: dict[str, Tool]
) -> None:
    execution = await executor.execute(call("hang"), deadline=Deadline.after(0.05))
    assert isinstance(execution.outcome, Failed)
    assert execution.outcome.code == "tool_timeout"
    hang = tools["hang"]
    assert isinstance(hang, HangingTool)
    assert hang.started.is_set()


async def test_a_crashing_tool_fails_without_its_exception_text(executor: ToolExecutor) -> None:
    execution = await executor.execute(call("crash"))
    assert isinstance(execution.outcome, Failed)
    assert execution.outcome.code == "internal_error"
    assert "kaboom" not in execution.outcome.message
    assert SECRET not in execution.outcome.message
    after = await executor.execute(call("current_date"))
    assert isinstance(after.outcome, Completed)


async def test_a_tool_errors_message_is_redacted(executor: ToolExecutor) -> None:
    outcome = (await executor.execute(call("leaky_error"))).outcome
    assert outcome == Failed("upstream_refused", "upstream refused token ***")


async def test_a_result_holding_the_secret_and_its_base64_is_redacted(
    executor: ToolExecutor,
) -> None:
    outcome = (await executor.execute(call("leaky_result"))).outcome
    assert isinstance(outcome, Completed)
    assert isinstance(outcome.result, dict)
    # The last base64 characters also encode the padding; only they may remain.
    auth = outcome.result.pop("auth")
    assert isinstance(auth, str)
    assert auth.startswith("Basic ***")
    assert len(auth) <= len("Basic ***") + 3
    assert outcome.result == {
        "token": "***",
        "nested": [{"deep": "...***..."}],
        "json": '{"token": "***"}',
        "harmless": "kept as is",
    }


async def test_handed_back_arguments_are_redacted(executor: ToolExecutor) -> None:
    outcome = (await executor.execute(call("leaky_result", hand_back=True))).outcome
    assert isinstance(outcome, RequiresAction)
    assert outcome.function_call.call_id == "call-leaky_result"
    assert json.loads(outcome.function_call.arguments) == {"token": "***"}


async def test_arguments_are_bound_before_the_tool_runs(executor: ToolExecutor) -> None:
    bad = ToolCall(Builtin("current_date"), '{"timezone": 3}')
    outcome = (await executor.execute(bad)).outcome
    assert isinstance(outcome, Failed)
    assert (outcome.code, outcome.param) == ("invalid_arguments", "timezone")


async def test_an_unknown_tool_is_raised_not_failed(executor: ToolExecutor) -> None:
    with pytest.raises(ToolNotFound):
        await executor.execute(ToolCall(Builtin("nope")))


@pytest.fixture
def json_logs() -> Iterator[None]:
    """Let a test configure the log pipeline; the previous logging comes back after it."""
    with restored_logging():
        yield


@pytest.mark.usefixtures("json_logs")
async def test_log_lines_never_carry_a_secret(
    executor: ToolExecutor, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level="debug", fmt="json")
    for name in ("crash", "leaky_error", "leaky_result", "hang"):
        await executor.execute(call(name, timeout=0.05))
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    events = [line["event"] for line in lines]
    assert events.count("tool.executed") == 4
    assert "tool.crashed" in events
    crashed = next(line for line in lines if line["event"] == "tool.crashed")
    assert "kaboom while holding ***" in crashed["exception"]
    text = json.dumps(lines)
    for leak in (SECRET, B64[:20], json.dumps(SECRET)[1:-1]):
        assert leak not in text
