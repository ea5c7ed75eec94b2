"""The `google_search` platform tool (SPEC §2.2): web search through a configured backend.

The backend (Google Programmable Search, SearXNG or Brave, see `search_backends`)
is chosen by the operator. The request goes through the service's guarded client,
bounded in time and in bytes, and is never redirected (a key must not follow a
redirect elsewhere). Failures the model reads:

    search_not_configured   no backend is configured
    search_quota_exceeded   the backend's rate limit or quota
    search_auth_failed      the backend refused the key (SearXNG: the JSON format)
    search_error            any other failed answer, an unreadable answer, no connection
    upstream_timeout        no answer within the search timeout
"""

from __future__ import annotations

import json

import anyio
import httpx

from tools.base import (
    FunctionDefinition,
    InvalidArguments,
    JsonObject,
    JsonValue,
    TimeLimit,
    ToolContext,
    ToolError,
    ToolResult,
    UpstreamTimeout,
)
from tools.http_response import failure_kind, read_capped
from tools.search_backends import (
    SearchBackend,
    SearchFailure,
    SearchQuery,
    SearchRequest,
    UnexpectedAnswer,
)
from tools.search_text import normalised_results, plain_text

__all__ = ["DEFINITION", "NOT_CONFIGURED", "GoogleSearchTool"]

NOT_CONFIGURED = (
    "web search is not configured on this service: set SIDECAR_SEARCH_BACKEND to "
    "'google' (with SIDECAR_GOOGLE_API_KEY and SIDECAR_GOOGLE_CSE_ID), 'searxng' "
    "(with SIDECAR_SEARXNG_URL) or 'brave' (with SIDECAR_BRAVE_API_KEY)"
)
DEFAULT_RESULTS = 5
MAX_DETAIL_CHARS = 300

DEFINITION = FunctionDefinition(
    name="google_search",
    description=(
        "Search the web. Returns the top results, each with a title, a URL and a "
        "snippet of the page."
    ),
    parameters={
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": 2048,
                "description": "What to search for.",
            },
            "num_results": {
                "type": "integer",
                "minimum": 1,
                "maximum": 10,
                "description": f"How many results to return (1-10, default {DEFAULT_RESULTS}).",
            },
            "language": {
                "type": "string",
                "pattern": "^[A-Za-z]{2,3}(-[A-Za-z]{2})?$",
                "description": "Language of the results, an ISO 639-1 code: 'en', 'pt-BR'.",
            },
            "country": {
                "type": "string",
                "pattern": "^[A-Za-z]{2}$",
                "description": "Country to favour, a two-letter ISO 3166-1 code such as 'DE'.",
            },
        },
        "required": ["query"],
    },
)


def search_query(arguments: JsonObject) -> SearchQuery:
    """The model's arguments as a query in canonical form (schema-validated before)."""
    text = arguments.get("query")
    if not isinstance(text, str) or not text.strip():
        raise InvalidArguments("query must be a non-empty string", param="query")
    count = arguments.get("num_results")
    language = arguments.get("language")
    country = arguments.get("country")
    return SearchQuery(
        text=text.strip(),
        num_results=count if isinstance(count, int) else DEFAULT_RESULTS,
        language=_language_tag(language) if isinstance(language, str) else None,
        country=country.upper() if isinstance(country, str) else None,
    )


def _language_tag(value: str) -> str:
    base, _, region = value.partition("-")
    return f"{base.lower()}-{region.upper()}" if region else base.lower()


class GoogleSearchTool:
    """Searches the web through one backend; without one, every call says how to set it up."""

    def __init__(
        self,
        backend: SearchBackend | None,
        *,
        timeout: float = 10.0,
        max_answer_bytes: int = 2_097_152,
    ) -> None:
        self._backend = backend
        self._timeout = timeout
        self._max_bytes = max_answer_bytes

    @property
    def definition(self) -> FunctionDefinition:
        return DEFINITION

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolResult:
        """Search and return `{query, results: [{title, url, snippet}], backend}`."""
        backend = self._backend
        if backend is None:
            raise ToolError(NOT_CONFIGURED, code="search_not_configured")
        query = search_query(arguments)
        request = backend.request(query)
        where = f"the {backend.name} search backend ({_host(request.url)})"
        status, answer = await self._exchange(request, ctx, where)
        if 300 <= status < 400:
            raise ToolError(
                f"{where} answered a redirect ({status}), which is not followed: "
                "configure the backend's final URL",
                code="search_error",
            )
        if status >= 400:
            failure = backend.failure(status, answer)
            raise ToolError(
                self._failure_message(failure, status, where, ctx), code=failure.kind.value
            )
        try:
            hits = backend.hits(answer)
        except UnexpectedAnswer as exc:
            raise ToolError(
                f"{where} sent an answer that is not its JSON format: {exc}", code="search_error"
            ) from None
        results = normalised_results(hits, query.num_results)
        return ToolResult({"query": query.text, "results": list(results), "backend": backend.name})

    async def _exchange(
        self, request: SearchRequest, ctx: ToolContext, where: str
    ) -> tuple[int, JsonValue]:
        """The answer's status and its JSON body (None when the body is not JSON)."""
        limit = TimeLimit.of(self._timeout, ctx.deadline)
        if limit.seconds <= 0:
            raise TimeoutError
        try:
            with anyio.fail_after(limit.seconds):
                outgoing = ctx.http.build_request(
                    "GET",
                    request.url,
                    params=list(request.params),
                    headers=list(request.headers),
                    timeout=limit.seconds,
                )
                response = await ctx.http.send(outgoing, stream=True, follow_redirects=False)
                try:
                    body, truncated = await read_capped(response, self._max_bytes)
                finally:
                    await response.aclose()
        except (httpx.TimeoutException, TimeoutError):
            timeout = UpstreamTimeout(f"{where} did not answer within {limit.own:g} s")
            raise limit.expired(timeout) from None
        except httpx.RequestError as exc:
            kind = failure_kind(exc)
            raise ToolError(f"{where} could not be reached: {kind}", code="search_error") from None
        if truncated:
            raise ToolError(
                f"{where} sent an answer larger than {self._max_bytes} bytes", code="search_error"
            )
        return response.status_code, _json(body, ok=response.is_success, where=where)

    def _failure_message(
        self, failure: SearchFailure, status: int, where: str, ctx: ToolContext
    ) -> str:
        message = f"{where} answered {status}"
        detail = plain_text(failure.detail)
        # The message is the backend's; one that quotes the key is not passed on. The
        # whole message is checked before it is cut, so a cut cannot hide a key.
        if detail and self._quotes_a_secret(detail, ctx):
            detail = "(its message is withheld: it quoted the key)"
        else:
            detail = ctx.mask.cut(detail, MAX_DETAIL_CHARS)
        if detail:
            message += f": {detail}"
        if failure.hint:
            message += f" ({failure.hint})"
        return message

    def _quotes_a_secret(self, text: str, ctx: ToolContext) -> bool:
        secrets = self._backend.secrets if self._backend is not None else ()
        return ctx.mask.finds(text) or any(s and s in text for s in secrets)


def _json(body: bytes, *, ok: bool, where: str) -> JsonValue:
    try:
        value: JsonValue = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        if ok:
            raise ToolError(
                f"{where} sent an answer that is not JSON", code="search_error"
            ) from None
        return None  # an error page: its status says enough
    return value


def _host(url: str) -> str:
    parsed = httpx.URL(url)
    return parsed.host + (f":{parsed.port}" if parsed.port else "")
