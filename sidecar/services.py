"""Builds and closes the long-lived resources, in one exit stack (the composition root)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sidecar.crypto import SecretBox
from sidecar.deadlines import DeadlineWatch
from sidecar.execution import Executor
from sidecar.factory import HttpLimits, ToolFactory
from sidecar.logs import get_logger
from sidecar.manifests import load_tool_manifests
from sidecar.metrics import Metrics
from sidecar.outbound import OutboundPolicy, guarded_client
from sidecar.registry import Registry
from sidecar.settings import Settings
from sidecar.store import ToolStore
from sidecar.templating import PlaceholderRenderer
from tools.base import Tool
from tools.current_date import CurrentDateTool

__all__ = ["Services", "open_services", "platform_tools"]

log = get_logger("sidecar.services")
USER_AGENT = "orq-sidecar/0.1 (+tool execution)"


@dataclass(frozen=True)
class Services:
    """Everything the doors need, built once per process."""

    settings: Settings
    metrics: Metrics
    store: ToolStore
    registry: Registry
    executor: Executor

    async def readiness(self) -> dict[str, dict[str, Any]]:
        """Each dependency's state, for `/readyz`."""
        checks: dict[str, dict[str, Any]] = {}
        try:
            await self.store.ping()
            checks["store"] = {"ok": True}
        except (sqlite3.Error, RuntimeError) as exc:  # readiness reports, it does not crash
            checks["store"] = {"ok": False, "error": type(exc).__name__}
        checks["registry"] = {"ok": True, "platform_tools": sorted(self.registry.builtins)}
        return checks


def platform_tools() -> dict[str, Tool]:
    """The `orq:*` tools, by name."""
    return {"current_date": CurrentDateTool()}


@asynccontextmanager
async def open_services(
    settings: Settings, metrics: Metrics | None = None
) -> AsyncIterator[Services]:
    """Open every resource; all are closed, in reverse order, when the block ends."""
    async with AsyncExitStack() as stack:
        manifest_tools = load_tool_manifests(settings.manifests_dir)
        configured_key = (
            settings.encryption_key.get_secret_value() if settings.encryption_key else None
        )
        box = SecretBox.from_settings(configured_key, settings.key_path)
        store = await stack.enter_async_context(ToolStore(settings.database_path))
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
        registry = Registry(
            store=store, factory=factory, builtins=platform_tools(), manifest_tools=manifest_tools
        )
        deadlines = DeadlineWatch()
        stack.callback(deadlines.close)
        executor = Executor(
            deadlines=deadlines,
            registry=registry,
            http=http,
            renderer=PlaceholderRenderer(),
            metrics=metrics,
            max_timeout=settings.max_tool_timeout,
        )
        log.info(
            "services.ready",
            manifest_tools=len(manifest_tools),
            state_dir=str(settings.state_dir),
        )
        yield Services(settings, metrics, store, registry, executor)
