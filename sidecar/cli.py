"""The `sidecar` command: `serve`, `mcp`, `tools list`, `tools call`, `manifests check`,
`db migrate`."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import anyio
import uvicorn
from pydantic import ValidationError

from sandbox import SandboxPool
from sidecar.api.wire import to_wire
from sidecar.app import create_app
from sidecar.errors import BadRequest, ManifestError, SidecarError
from sidecar.execution import ToolCall
from sidecar.llm.providers.catalog import ProvidersFileError, provider_specs
from sidecar.logs import configure_logging, get_logger
from sidecar.mcp.server import McpServer, mcp_face, serve_stdio
from sidecar.mcp.variables_file import VariablesFileError, load_variables_file
from sidecar.registry.agent_definitions import PLATFORM_TOOL_TYPES
from sidecar.registry.crypto import KeyFileError
from sidecar.registry.definitions import (
    CodeToolDefinition,
    McpToolDefinition,
    StoredTool,
    ToolDefinition,
)
from sidecar.registry.manifests import load_agent_manifests, load_tool_manifests, manifest_files
from sidecar.registry.references import parse_reference
from sidecar.services import databases, open_services
from sidecar.settings import Settings, env_name
from sidecar.shutdown import Drain
from sidecar.tracing import TracingSettingsError
from sidecar.variables import secret_values
from tools.base import JsonValue, Secret, VariableValue

__all__ = ["main"]

log = get_logger("sidecar.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings(**_overrides(args))
    except ValidationError as exc:
        print(f"sidecar: invalid settings: {_settings_problems(exc)}", file=sys.stderr)
        return 2
    try:
        result: int = args.handler(args, settings)
        return result
    except TracingSettingsError as exc:
        print(f"sidecar: invalid settings: {exc}", file=sys.stderr)
        return 2
    except SidecarError as exc:
        print(json.dumps({"error": {"code": exc.code, "message": exc.message}}), file=sys.stderr)
        return 1


def _settings_problems(error: ValidationError) -> str:
    """Each problem on one line, naming its variable; never the values (keys among them)."""
    problems = []
    for problem in error.errors(include_input=False, include_url=False):
        message = problem["msg"].removeprefix("Value error, ")
        names = [str(part) for part in problem["loc"]]
        where = f"{env_name(names[0])}: " if names else ""
        problems.append(where + message)
    return "; ".join(problems)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidecar", description="orq tool-execution sidecar")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="listen address (SIDECAR_HOST)")
    serve.add_argument("--port", type=int, help="listen port (SIDECAR_PORT)")
    serve.set_defaults(handler=_serve)

    mcp = commands.add_parser("mcp", help="serve the tools over MCP on stdin and stdout")
    mcp.set_defaults(handler=_mcp)

    tools = commands.add_parser("tools", help="list and try tools").add_subparsers(
        required=True, metavar="ACTION"
    )
    listing = tools.add_parser("list", help="print every tool as JSON lines")
    listing.set_defaults(handler=_tools_list)
    call = tools.add_parser("call", help="execute a tool and print the redacted outcome")
    call.add_argument("tool", help="platform tool name, key or tool id")
    call.add_argument("--arg", action="append", default=[], metavar="K=V", help="an argument")
    call.add_argument("--var", action="append", default=[], metavar="K=V", help="a variable")
    call.add_argument("--secret", action="append", default=[], metavar="K=V", help="a secret")
    call.add_argument("--timeout", type=float, help="seconds")
    call.add_argument(
        "--mcp-tool", metavar="NAME", help="for an MCP server: the id or name of one of its tools"
    )
    call.set_defaults(handler=_tools_call)

    database = commands.add_parser("db", help="the stores' database").add_subparsers(
        required=True, metavar="ACTION"
    )
    migrate = database.add_parser(
        "migrate", help="bring the schema up to date (SQLite files or SIDECAR_DATABASE_URL)"
    )
    migrate.set_defaults(handler=_db_migrate)

    manifests = commands.add_parser("manifests", help="manifest files").add_subparsers(
        required=True, metavar="ACTION"
    )
    check = manifests.add_parser(
        "check", help="validate manifests/tools/*.yaml and manifests/agents/*.yaml"
    )
    check.set_defaults(handler=_manifests_check)
    for sub in (listing, call, check, serve, mcp):
        sub.add_argument("--manifests-dir", help="SIDECAR_MANIFESTS_DIR")
    for sub in (listing, call, check, serve, mcp, migrate):
        sub.add_argument("--state-dir", help="SIDECAR_STATE_DIR")
    for sub in (serve, mcp):
        sub.add_argument("--variables-file", help="SIDECAR_MCP_VARIABLES_FILE")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = {
        "host": "host",
        "port": "port",
        "manifests_dir": "manifests_dir",
        "state_dir": "state_dir",
        "variables_file": "mcp_variables_file",
    }
    return {
        setting: getattr(args, name)
        for name, setting in names.items()
        if getattr(args, name, None) is not None
    }


class _Server(uvicorn.Server):
    """uvicorn's server with the service's shutdown.

    The first SIGINT/SIGTERM begins the drain (`/readyz` fails, new work is refused);
    the server keeps serving until the work in flight is done or
    `SIDECAR_SHUTDOWN_GRACE` seconds passed, cuts what is left (each cut request
    answers `shutting_down`), and only then lets uvicorn close its listener and
    connections. A second signal cuts at once. Returns instead of re-raising the
    signal, so that the resources opened around it are closed and the exit code is 0.
    """

    def __init__(self, config: uvicorn.Config, drain: Drain, grace: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._grace = grace
        self._signals = 0
        self._drained = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            self._drain.begin()  # a flag: the main loop's next tick does the rest
        else:
            super().handle_exit(sig, frame)
        self._captured_signals.clear()

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        if not self._drain.draining or self._drained:
            return False
        log.info("shutdown.draining", in_flight=self._drain.in_flight, grace_seconds=self._grace)
        cut = await self._drain.settle(self._grace, hurry=lambda: self._signals > 1)
        log.info("shutdown.drained", cut=cut)
        self._drained = True
        return True


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    async def run(variables: Mapping[str, VariableValue]) -> None:
        async with open_services(settings) as services:
            config = uvicorn.Config(
                create_app(settings, services, mcp_variables=variables),
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
                lifespan="on",
                server_header=False,
                timeout_graceful_shutdown=5,  # after the drain, for connections left open
                # Longer than the pools of the clients in front (httpx and Node keep an idle
                # connection 4-5 s, load balancers 60): were it shorter, a busy loop could
                # run the close of a connection before reading the request just sent on it.
                timeout_keep_alive=settings.keep_alive_timeout,
            )
            await _Server(config, services.drain, settings.shutdown_grace).serve()
        log.info("services.closed")

    return _run_service(settings, run)


def _mcp(args: argparse.Namespace, settings: Settings) -> int:
    # Logs go to stderr, as always: stdout carries the protocol alone.
    @asynccontextmanager
    async def opened_server(variables: Mapping[str, VariableValue]) -> AsyncIterator[McpServer]:
        async with open_services(settings) as services:
            yield mcp_face(services, variables)
        log.info("services.closed")

    async def run(variables: Mapping[str, VariableValue]) -> None:
        await serve_stdio(opened_server(variables))

    return _run_service(settings, run)


def _run_service(
    settings: Settings, run: Callable[[Mapping[str, VariableValue]], Awaitable[None]]
) -> int:
    """Read the MCP variables file, set up the logs, then `run`; a failed start is one line."""
    try:
        variables = load_variables_file(settings.mcp_variables_file)
    except VariablesFileError as exc:
        return _cannot_start(exc)
    secrets = _service_secrets(settings, variables)
    configure_logging(settings.log_level, settings.log_format, secrets)
    try:
        anyio.run(run, variables, backend_options={"use_uvloop": _has_uvloop()})
    except (ManifestError, KeyFileError, ProvidersFileError) as exc:
        return _cannot_start(exc)
    return 0


def _cannot_start(problem: Exception) -> int:
    print(f"sidecar: cannot start: {problem}", file=sys.stderr)
    return 2


def _has_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def _service_secrets(
    settings: Settings, variables: Mapping[str, VariableValue] | None = None
) -> list[str]:
    """Values masked in every log line: the keys (the providers file's included), and the
    secrets of the MCP variables file."""
    try:
        specs = provider_specs(settings)
    except ProvidersFileError:
        specs = {}  # the start fails on it with its own line
    keys = [spec.key.reveal() for spec in specs.values() if spec.key is not None]
    return [*settings.service_secrets(), *keys, *secret_values(variables or {})]


def _tools_list(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> None:
        configure_logging("warning", settings.log_format, _service_secrets(settings))
        async with open_services(settings) as services:
            for name, tool in sorted(services.registry.builtins.items()):
                print(json.dumps({"type": f"orq:{name}", "name": tool.definition.name}))
            for stored in await services.registry.all():
                definition = stored.definition
                print(
                    json.dumps(
                        {
                            "_id": stored.tool_id,
                            "key": definition.key,
                            "type": definition.type,
                            "source": stored.source,
                            "description": definition.description,
                            **_listed_mcp_tools(definition),
                        }
                    )
                )

    anyio.run(run)
    return 0


def _listed_mcp_tools(definition: ToolDefinition) -> dict[str, list[str]]:
    """An MCP server's tools, by name, as far as they are listed yet."""
    if not isinstance(definition, McpToolDefinition):
        return {}
    return {"tools": [entry.name for entry in definition.mcp.tools]}


def _tools_call(args: argparse.Namespace, settings: Settings) -> int:
    variables: dict[str, VariableValue] = dict(_pairs(args.var, "--var"))
    secrets = _pairs(args.secret, "--secret", as_json=False)
    variables.update({name: Secret(str(value)) for name, value in secrets})
    reference = parse_reference(args.tool)
    if args.mcp_tool is not None:
        reference = parse_reference({"type": "mcp", "key": args.tool, "tool_id": args.mcp_tool})
    call = ToolCall(
        reference=reference,
        arguments=dict(_pairs(args.arg, "--arg")),
        variables=variables,
        timeout=args.timeout,
    )

    async def run() -> int:
        configure_logging("warning", settings.log_format, _service_secrets(settings))
        async with open_services(settings) as services:
            execution = await services.executor.execute(call)
        answer = to_wire(execution)
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 1 if answer["status"] == "failed" else 0

    return anyio.run(run)


def _pairs(items: Sequence[str], flag: str, *, as_json: bool = True) -> list[tuple[str, JsonValue]]:
    """`k=v` pairs; a value that parses as JSON takes its JSON type, else it is text."""
    pairs: list[tuple[str, JsonValue]] = []
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise BadRequest(f"{flag} expects NAME=VALUE, got {item.split('=')[0]!r}=...")
        value: JsonValue = raw
        if as_json:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        pairs.append((name, value))
    return pairs


def _db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Apply the migrations each database lacks; one JSON line per schema."""

    async def migrate() -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for database in databases(settings):
            try:
                applied = await database.migrate()
            finally:
                await database.close()
            lines.extend(
                {"database": database.describe(), "schema": name, "from": old, "to": new}
                for name, (old, new) in applied.items()
            )
        return lines

    try:
        lines = anyio.run(migrate)
    except RuntimeError as exc:  # a schema newer than this sidecar
        print(
            json.dumps({"error": {"code": "schema_too_new", "message": str(exc)}}), file=sys.stderr
        )
        return 1
    for line in lines:
        print(json.dumps(line))
    return 0


def _manifests_check(args: argparse.Namespace, settings: Settings) -> int:
    tools = load_tool_manifests(settings.manifests_dir)
    agents = load_agent_manifests(settings.manifests_dir)
    files = manifest_files(settings.manifests_dir)
    failures = anyio.run(_compile_failures, tools)
    for stored in tools:
        problem = failures.get(stored.definition.key)
        status = "ok  " if problem is None else "FAIL"
        line = f"{status} {stored.definition.type:<11} {stored.definition.key}  ({stored.tool_id})"
        print(line if problem is None else f"{line}: the code does not compile: {problem}")
    print(f"{len(tools)} tools in {len(files)} files under {settings.manifests_dir / 'tools'}")
    known = {stored.definition.key: stored.definition.type for stored in tools}
    for agent in agents:
        print(f"ok   {'agent':<11} {agent.definition.key}  ({agent.agent_id})")
        for tool in agent.definition.settings.tools:
            if tool.type not in PLATFORM_TOOL_TYPES and known.get(tool.ident) != tool.type:
                print(
                    f"     note: {tool.type} tool {tool.ident!r} is not in the manifests; "
                    "register it through /v2/tools before the agent runs"
                )
    folder = settings.manifests_dir / "agents"
    count = len(manifest_files(settings.manifests_dir, "agents"))
    print(f"{len(agents)} agents in {count} files under {folder}")
    return 1 if failures else 0


async def _compile_failures(tools: Sequence[StoredTool]) -> dict[str, str]:
    """Each code tool whose code does not compile (in a confined child), with the reason."""
    code_tools = [tool for tool in tools if isinstance(tool.definition, CodeToolDefinition)]
    if not code_tools:
        return {}
    failures: dict[str, str] = {}
    async with SandboxPool() as pool:
        for stored in code_tools:
            assert isinstance(stored.definition, CodeToolDefinition)
            failure = await pool.check(stored.definition.code_tool.code)
            if failure is not None:
                failures[stored.definition.key] = failure.message
    return failures
