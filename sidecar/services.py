"""Builds and closes the long-lived resources, in one exit stack (the composition root)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from sandbox import SandboxLimits, SandboxPool
from sidecar.code_runner import SandboxCodeRunner
from sidecar.database import Database
from sidecar.database.postgres import PostgresDatabase
from sidecar.database.sqlite import SqliteDatabase
from sidecar.deadlines import DeadlineWatch
from sidecar.errors import StoreUnavailable
from sidecar.execution import Executor
from sidecar.llm.providers.catalog import ProviderSpec, build_provider, provider_specs
from sidecar.llm.providers.lean_http import LeanTransport
from sidecar.llm.responder import Responder
from sidecar.llm.routing import Router
from sidecar.llm.store import RESPONSES_SCHEMA, ResponseStore
from sidecar.logs import get_logger
from sidecar.mcp_pool import McpPool, McpPoolSettings
from sidecar.metrics import Metrics
from sidecar.outbound import OutboundPolicy, guarded_client
from sidecar.registry.agent_store import AgentStore
from sidecar.registry.agents import Agents
from sidecar.registry.crypto import SecretBox
from sidecar.registry.definitions import StoredTool
from sidecar.registry.discovery import McpDiscovery
from sidecar.registry.factory import HttpLimits, ToolFactory
from sidecar.registry.manifests import load_agent_manifests, load_tool_manifests
from sidecar.registry.references import ToolExecutor
from sidecar.registry.registry import Registry
from sidecar.registry.store import REGISTRY_SCHEMA, ToolStore
from sidecar.settings import Settings
from sidecar.shutdown import Drain
from sidecar.templating import PlaceholderRenderer
from sidecar.tracing import NO_TRACING, Tracing
from tools.base import Secret, Tool
from tools.current_date import CurrentDateTool
from tools.google_search import GoogleSearchTool
from tools.page_fetch import FetchLimits
from tools.search_backends import BraveBackend, GoogleBackend, SearchBackend, SearxngBackend
from tools.web_scraper import ScraperOptions, WebScraperTool

__all__ = [
    "Services",
    "databases",
    "open_databases",
    "open_services",
    "platform_tools",
    "services_from",
    "started_services",
    "tracing_from_environment",
]

log = get_logger("sidecar.services")
USER_AGENT = "orq-sidecar/0.1 (+tool execution)"


@dataclass(frozen=True)
class Services:
    """Everything the doors need, built once per process."""

    settings: Settings
    metrics: Metrics
    store: ToolStore
    registry: Registry
    executor: ToolExecutor
    sandbox: SandboxPool | None
    mcp: McpPool | None = None
    responder: Responder | None = None
    agents: Agents | None = None
    drain: Drain = field(default_factory=Drain)
    tracing: Tracing = NO_TRACING

    async def readiness(self) -> dict[str, dict[str, Any]]:
        """Each dependency's state, for `/readyz`."""
        checks: dict[str, dict[str, Any]] = {}
        backend = self.store.database.dialect
        try:
            await self.store.ping()
            checks["store"] = {"ok": True, "backend": backend}
        except (StoreUnavailable, RuntimeError) as exc:  # readiness reports, it does not crash
            checks["store"] = {"ok": False, "backend": backend, "error": type(exc).__name__}
        checks["registry"] = {"ok": True, "platform_tools": sorted(self.registry.builtins)}
        if self.responder is not None:
            try:
                await self.responder.ping()
                checks["model_core"] = {"ok": True, "providers": self.responder.providers}
            except (StoreUnavailable, RuntimeError) as exc:
                checks["model_core"] = {"ok": False, "error": type(exc).__name__}
        if self.mcp is not None:
            checks["mcp"] = {"ok": True, "upstream_connections": self.mcp.open_connections}
        if self.sandbox is None:
            checks["sandbox"] = {"ok": True, "enabled": False}
        else:
            alive = self.sandbox.zygote_pid is not None
            checks["sandbox"] = {
                "ok": alive,
                "enabled": True,
                "layers": self.sandbox.layers,
                "prefault_pages": self.sandbox.prefault_pages,
            }
        return checks


def platform_tools(settings: Settings) -> dict[str, Tool]:
    """The `orq:*` tools, by name."""
    return {
        "current_date": CurrentDateTool(),
        "web_scraper": WebScraperTool(scraper_options(settings)),
        "google_search": GoogleSearchTool(
            search_backend(settings), timeout=settings.search_timeout
        ),
    }


def search_backend(settings: Settings) -> SearchBackend | None:
    """The configured search backend (the settings checked it is complete), or None."""
    match settings.search_backend:
        case "google" if settings.google_api_key and settings.google_cse_id:
            key = Secret(settings.google_api_key.get_secret_value())
            return GoogleBackend(key, settings.google_cse_id, settings.google_base_url)
        case "searxng" if settings.searxng_url:
            return SearxngBackend(settings.searxng_url, settings.searxng_password)
        case "brave" if settings.brave_api_key:
            key = Secret(settings.brave_api_key.get_secret_value())
            return BraveBackend(key, settings.brave_base_url)
    return None


def platform_secrets(settings: Settings) -> dict[str, tuple[str, ...]]:
    """The secrets platform tools hold from the settings (the search backend's key)."""
    backend = search_backend(settings)
    return {"google_search": backend.secrets} if backend is not None else {}


def scraper_options(settings: Settings) -> ScraperOptions:
    """The web scraper's limits from the settings."""
    return ScraperOptions(
        fetch=FetchLimits(
            max_bytes=settings.scraper_max_bytes,
            max_redirects=settings.scraper_max_redirects,
            user_agent=settings.scraper_user_agent,
        ),
        timeout=settings.scraper_timeout,
        default_max_chars=min(settings.scraper_default_chars, settings.scraper_max_chars),
        max_chars_limit=settings.scraper_max_chars,
        respect_robots=settings.scraper_respect_robots,
    )


@asynccontextmanager
async def open_services(
    settings: Settings,
    metrics: Metrics | None = None,
    drain: Drain | None = None,
    tracing: Tracing | None = None,
) -> AsyncIterator[Services]:
    """Open every resource; all are closed, in reverse order, when the block ends.

    Without `tracing`, the OTEL_* variables say whether spans are exported."""
    drain = drain or Drain()
    tracing = tracing or tracing_from_environment(settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(tracing.exporting())
        manifest_tools = load_tool_manifests(settings.manifests_dir)
        manifest_agents = load_agent_manifests(settings.manifests_dir)
        configured_key = (
            settings.encryption_key.get_secret_value() if settings.encryption_key else None
        )
        box = SecretBox.from_settings(configured_key, settings.key_path)
        registry_db, responses_db = await stack.enter_async_context(open_databases(settings))
        store = ToolStore(registry_db)
        http = await stack.enter_async_context(
            guarded_client(
                OutboundPolicy(settings.outbound_allow),
                max_connections=settings.outbound_max_connections,
                user_agent=USER_AGENT,
            )
        )
        metrics = metrics or Metrics()
        factory = ToolFactory(
            box,
            HttpLimits(
                max_response_bytes=settings.http_max_response_bytes,
                max_redirects=settings.http_max_redirects,
            ),
        )
        pool = await _open_sandbox(stack, settings)
        code = SandboxCodeRunner(pool) if pool is not None else None
        renderer = PlaceholderRenderer()
        mcp = await stack.enter_async_context(
            McpPool.open(
                OutboundPolicy(settings.outbound_allow),
                McpPoolSettings(
                    connect_timeout=settings.mcp_connect_timeout,
                    call_timeout=settings.mcp_call_timeout,
                    idle_timeout=settings.mcp_idle_timeout,
                    max_connections=settings.mcp_max_connections,
                ),
                tracing,
            )
        )
        registry = Registry(
            store=store,
            factory=factory,
            builtins=platform_tools(settings),
            platform_secrets=platform_secrets(settings),
            manifest_tools=manifest_tools,
            code=code,
            mcp=McpDiscovery(
                factory=factory,
                connector=mcp,
                renderer=renderer,
                time_limit=settings.mcp_connect_timeout + settings.mcp_call_timeout,
            ),
        )
        await check_manifest_code(registry, manifest_tools, settings)
        deadlines = DeadlineWatch()
        stack.callback(deadlines.close)
        executor: ToolExecutor = Executor(
            deadlines=deadlines,
            resolver=registry,
            http=http,
            renderer=renderer,
            metrics=metrics,
            code=code,
            mcp=mcp,
            max_timeout=settings.max_tool_timeout,
            kind_limits=settings.tool_limits,
            tracing=tracing,
        )
        agents = Agents(AgentStore(registry_db), registry, manifest_agents)
        await agents.check_manifests()
        responses = await stack.enter_async_context(ResponseStore(responses_db))
        specs = provider_specs(settings)
        responder = Responder(
            router=_router(stack, specs, metrics, tracing),
            specs=specs,
            registry=registry,
            executor=executor,
            store=responses,
            agents=agents,
            drain=drain,
        )
        log.info(
            "services.ready",
            manifest_tools=len(manifest_tools),
            manifest_agents=len(manifest_agents),
            state_dir=str(settings.state_dir),
            database=registry_db.describe(),
            providers=responder.providers,
        )
        yield Services(
            settings,
            metrics,
            store,
            registry,
            executor,
            pool,
            mcp,
            responder,
            agents,
            drain,
            tracing,
        )


def tracing_from_environment(settings: Settings) -> Tracing:
    """Traces as the OTEL_* variables ask (off without them), masking the service's secrets."""
    return Tracing.from_environment(settings.service_secrets())


def _router(
    stack: AsyncExitStack, specs: Mapping[str, ProviderSpec], metrics: Metrics, tracing: Tracing
) -> Router:
    """The providers, behind retries and fallbacks, on their own HTTP client."""
    # Provider addresses are the operator's settings, not a model's or a user's choice:
    # the outbound guard (which keeps those away from private hosts) does not apply.
    transport = LeanTransport(user_agent=USER_AGENT)
    stack.push_async_callback(transport.aclose)
    providers = {name: build_provider(spec, transport) for name, spec in specs.items()}
    return Router(providers, metrics=metrics, tracing=tracing)


def databases(settings: Settings) -> list[SqliteDatabase | PostgresDatabase]:
    """The stores' databases, not opened yet: one PostgreSQL database for the registry
    and the responses when `SIDECAR_DATABASE_URL` is set, else a SQLite file each."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        schemas = (REGISTRY_SCHEMA, RESPONSES_SCHEMA)
        pool_size, timeout = settings.database_pool_size, settings.database_timeout
        return [PostgresDatabase(url, schemas, pool_size=pool_size, timeout=timeout)]
    return [
        SqliteDatabase(settings.database_path, REGISTRY_SCHEMA),
        SqliteDatabase(settings.responses_path, RESPONSES_SCHEMA),
    ]


@asynccontextmanager
async def open_databases(settings: Settings) -> AsyncIterator[tuple[Database, Database]]:
    """The registry's and the responses' databases, opened and migrated."""
    async with AsyncExitStack() as stack:
        opened: list[Database] = [await stack.enter_async_context(db) for db in databases(settings)]
        yield opened[0], opened[-1]


async def _open_sandbox(stack: AsyncExitStack, settings: Settings) -> SandboxPool | None:
    if not settings.sandbox_enabled:
        log.info("sandbox.disabled")
        return None
    limits = SandboxLimits(
        cpu_seconds=settings.sandbox_cpu_seconds,
        memory_mb=settings.sandbox_memory_mb,
        max_output_chars=settings.sandbox_max_output_chars,
    )
    pool = await stack.enter_async_context(
        SandboxPool(
            limits, max_concurrency=settings.sandbox_concurrency, max_queue=settings.sandbox_queue
        )
    )
    _warn_missing_layers(pool.layers, pool.prefault_pages)
    return pool


def _warn_missing_layers(layers: dict[str, bool], prefault_pages: int) -> None:
    missing = sorted(name for name, applied in layers.items() if not applied)
    if missing:
        log.warning("sandbox.layers_missing", missing=missing, layers=layers)
    else:
        log.info("sandbox.ready", layers=layers, prefault_pages=prefault_pages)


async def check_manifest_code(
    registry: Registry, tools: Sequence[StoredTool], settings: Settings
) -> None:
    """Compile every manifest code tool now, so a broken one stops the start."""
    for stored in tools:
        where = f"{settings.manifests_dir / 'tools'} ({stored.definition.key})"
        await registry.check_code(stored.definition, where=where)


def services_from(connection: HTTPConnection) -> Services:
    """The services of the app that received `connection` (opened by its lifespan)."""
    services = started_services(connection)
    if services is None:
        raise RuntimeError("the app's services are not open (its lifespan has not run)")
    return services


def started_services(connection: HTTPConnection) -> Services | None:
    """The app's services, or None while its lifespan has not opened them yet."""
    services: Services | None = getattr(connection.app.state, "services", None)
    return services
