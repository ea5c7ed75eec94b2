"""The Starlette application: routes, the edge middleware, error handlers, the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar.api import agent_routes, calls, health, registry_routes, responses
from sidecar.api.middleware import EdgeMiddleware
from sidecar.api.openapi import openapi_document
from sidecar.api.wire import error_response, json_response
from sidecar.errors import MethodNotAllowed, NotFound, SidecarError
from sidecar.limits import RequestLimits
from sidecar.logs import get_logger
from sidecar.mcp.server import McpEndpoint, mcp_http_app, open_face
from sidecar.mcp.variables_file import load_variables_file
from sidecar.metrics import Metrics
from sidecar.services import Services, open_services, tracing_from_environment
from sidecar.settings import Settings
from sidecar.shutdown import Drain
from tools.base import VariableValue

__all__ = ["create_app"]

log = get_logger("sidecar.app")


def create_app(
    settings: Settings,
    services: Services | None = None,
    *,
    mcp_variables: Mapping[str, VariableValue] | None = None,
) -> Starlette:
    """The service's ASGI app.

    Given `services`, the app uses them and whoever opened them closes them (the
    `serve` command does); without, the app opens its own in its lifespan. The
    variables of MCP calls are read from `SIDECAR_MCP_VARIABLES_FILE` now, unless
    given (`VariablesFileError` names a bad file). The app's shutdown drain is the
    services' (`Services.drain`), which the `serve` command's server runs on SIGTERM.
    """
    metrics = services.metrics if services is not None else Metrics()
    drain = services.drain if services is not None else Drain()
    tracing = services.tracing if services is not None else tracing_from_environment(settings)
    variables = (
        load_variables_file(settings.mcp_variables_file) if mcp_variables is None else mcp_variables
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            opened = (
                services
                if services is not None
                else await stack.enter_async_context(
                    open_services(settings, metrics, drain, tracing)
                )
            )
            app.state.services = opened
            # A fresh MCP server per run: its session manager runs only once.
            face = open_face(opened, variables)
            app.state.mcp = mcp_http_app(face, settings)
            await stack.enter_async_context(face.server.session_manager.run())
            yield
        if services is None:
            log.info("services.closed")

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document())

    routes = [
        Route("/v1/tools/execute", calls.execute, methods=["POST"]),
        Route("/v1/tools/execute/batch", calls.execute_batch, methods=["POST"]),
        Route("/v1/tools/resolve", calls.resolve, methods=["POST"]),
        Route("/v2/tools", registry_routes.list_tools, methods=["GET"]),
        Route("/v2/tools", registry_routes.create_tool, methods=["POST"]),
        Route("/v2/tools/{tool_id}", registry_routes.get_tool, methods=["GET"]),
        Route("/v2/tools/{tool_id}", registry_routes.update_tool, methods=["PATCH"]),
        Route("/v2/tools/{tool_id}", registry_routes.delete_tool, methods=["DELETE"]),
        Route("/v2/tools/{tool_id}/refresh", registry_routes.refresh_tool, methods=["POST"]),
        Route("/v2/tools/{tool_id}/versions", registry_routes.list_tool_versions, methods=["GET"]),
        Route(
            "/v2/tools/{tool_id}/versions/{version_id}",
            registry_routes.get_tool_version,
            methods=["GET"],
        ),
        Route("/v2/agents", agent_routes.list_agents, methods=["GET"]),
        Route("/v2/agents", agent_routes.create_agent, methods=["POST"]),
        Route("/v2/agents/{agent_key}", agent_routes.get_agent, methods=["GET"]),
        Route("/v2/agents/{agent_key}", agent_routes.update_agent, methods=["PATCH"]),
        Route("/v2/agents/{agent_key}", agent_routes.delete_agent, methods=["DELETE"]),
        *(
            route
            for prefix in ("/v3/router/responses", "/v1/responses")
            for route in (
                Route(prefix, responses.create_response, methods=["POST"]),
                Route(prefix + "/{response_id}", responses.get_response, methods=["GET"]),
                Route(prefix + "/{response_id}", responses.delete_response, methods=["DELETE"]),
            )
        ),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/mcp", McpEndpoint()),
    ]
    middleware = [
        Middleware(
            EdgeMiddleware,
            api_keys=[key.get_secret_value() for key in settings.api_keys],
            max_body_bytes=settings.max_body_bytes,
            metrics=metrics,
            drain=drain,
            tracing=tracing,
            limits=RequestLimits(
                per_second=settings.rate_limit_per_second,
                burst=settings.rate_limit_burst,
                concurrent=settings.max_concurrent_per_key,
            ),
        )
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            SidecarError: _sidecar_error,
            HTTPException: _http_exception,
            Exception: _unexpected,
        },
    )


async def _sidecar_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SidecarError)
    return error_response(exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        return error_response(
            MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}"),
            {"allow": ", ".join(allowed)} if allowed else None,
        )
    if exc.status_code == 404:
        return error_response(NotFound(f"no route {request.url.path}"))
    return error_response(SidecarError(str(exc.detail), code=f"http_{exc.status_code}"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("http.unhandled", exc_info=exc)
    return error_response(SidecarError("internal error; see the service logs"))


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts for this path (one path may have several routes)."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
            methods.update(route.methods)
    return sorted(methods)
