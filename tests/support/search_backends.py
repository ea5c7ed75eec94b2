"""Stand-ins for the search services, on loopback, answering in each service's real format.

One Starlette app served by uvicorn in a thread plays all three services. The
first path segment picks the scenario, so a test points a backend at
`<base>/<scenario>/google`, `<base>/<scenario>/brave` or `<base>/<scenario>/searxng`
(SearXNG's `/search` is appended by the backend):

    ok          results (HTML in titles and snippets, a relative and a javascript: URL,
                a repeated URL); Google and Brave honour num/count, SearXNG sends 14
    empty       a search that found nothing
    quota       429 with the service's rate-limit body
    daily       Google only: 403 dailyLimitExceeded (its quota, answered as 403)
    badkey      Google: 400 API_KEY_INVALID; Brave: 422 SUBSCRIPTION_TOKEN_INVALID;
                SearXNG: 403 (the JSON format disabled)
    denied      403 with the service's body
    broken      500 with the service's error body
    leaky       400 whose message quotes the key the request carried
    leaky-N     the same, the key after N characters of other text
    garbage     200 with a body that is not JSON
    shapeless   200 with JSON that is not the service's format
    slow        answers after 30 seconds
    redirect    302 to the `ok` scenario
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from tests.support.upstream import serve_app

__all__ = ["FakeSearch", "Received", "serve_search_backends"]

PAGES = [
    ("https://docs.python.org/3/tutorial/", "The Python <b>Tutorial</b> &mdash; Python 3 docs"),
    ("https://www.python.org/", "Welcome to <strong>Python</strong>.org"),
    ("https://realpython.com/", "Real Python &amp; friends"),
    ("https://en.wikipedia.org/wiki/Python_(programming_language)", "Python (language)"),
    ("/relative/path", "A relative link"),
    ("javascript:alert(1)", "A script link"),
    ("https://www.python.org/", "The same page again"),
]
SNIPPET = "Learn <strong>Python</strong> &amp; its <em>standard</em> library&nbsp;today.<br>Free."


@dataclass(frozen=True)
class Received:
    """A request a stand-in received."""

    service: str
    scenario: str
    params: list[tuple[str, str]]
    headers: dict[str, str]

    def param(self, name: str) -> str | None:
        """The first value of query parameter `name`."""
        return next((value for key, value in self.params if key == name), None)


@dataclass
class FakeSearch:
    """The running stand-ins: their base URL and what they received."""

    base_url: str
    received: list[Received] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, service: str, scenario: str = "ok") -> str:
        """The base URL a backend of `service` uses to get `scenario`."""
        return f"{self.base_url}/{scenario}/{service}"

    def record(self, entry: Received) -> None:
        with self._lock:
            self.received.append(entry)

    def last(self, service: str) -> Received:
        """The latest request `service` received."""
        with self._lock:
            return next(r for r in reversed(self.received) if r.service == service)

    def count(self, scenario: str) -> int:
        """How many requests asked for `scenario`."""
        with self._lock:
            return sum(1 for r in self.received if r.scenario == scenario)


def _pages(count: int) -> list[tuple[str, str]]:
    # More pages than any search asks for: the known ones, then numbered ones.
    extra = [(f"https://example.org/page/{n}", f"Page {n}") for n in range(count)]
    return (PAGES + extra)[:count]


def _google_ok(request: Request) -> Response:
    count = int(request.query_params.get("num", "10"))
    items = [
        {
            "kind": "customsearch#result",
            "title": title,
            "htmlTitle": f"<b>{title}</b>",
            "link": link,
            "displayLink": link.split("/")[2] if "://" in link else link,
            "snippet": SNIPPET,
            "htmlSnippet": SNIPPET,
            "formattedUrl": link,
        }
        for link, title in _pages(min(count, 10))
    ]
    query = request.query_params.get("q", "")
    return JSONResponse(
        {
            "kind": "customsearch#search",
            "queries": {"request": [{"searchTerms": query, "count": len(items), "startIndex": 1}]},
            "searchInformation": {"searchTime": 0.21, "totalResults": "1230000"},
            "items": items,
        }
    )


def _google_error(status: int, message: str, state: str, reason: str) -> Response:
    error: dict[str, object] = {
        "code": status,
        "message": message,
        "errors": [{"message": message, "domain": "global", "reason": reason}],
        "status": state,
    }
    if reason == "API_KEY_INVALID":
        # An unknown key: a 400 whose real reason is in `details`.
        error["errors"] = [{"message": message, "domain": "global", "reason": "badRequest"}]
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "customsearch.googleapis.com"},
            }
        ]
    return JSONResponse({"error": error}, status_code=status)


def _google(scenario: str, request: Request) -> Response:
    key = request.query_params.get("key", "")
    match scenario:
        case "ok":
            return _google_ok(request)
        case "empty":
            return JSONResponse({"kind": "customsearch#search", "searchInformation": {}})
        case "quota":
            return _google_error(
                429,
                "Quota exceeded for quota metric 'Queries' and limit 'Queries per day' "
                "of service 'customsearch.googleapis.com'",
                "RESOURCE_EXHAUSTED",
                "rateLimitExceeded",
            )
        case "daily":
            return _google_error(
                403, "Daily Limit Exceeded", "PERMISSION_DENIED", "dailyLimitExceeded"
            )
        case "badkey":
            return _google_error(
                400,
                "API key not valid. Please pass a valid API key.",
                "INVALID_ARGUMENT",
                "API_KEY_INVALID",
            )
        case "denied":
            return _google_error(
                403,
                "This project does not have the access to Custom Search JSON API.",
                "PERMISSION_DENIED",
                "forbidden",
            )
        case "broken":
            return _google_error(500, "Backend Error", "INTERNAL", "backendError")
        case "leaky":
            return _google_error(400, f"Invalid value for key={key}", "INVALID_ARGUMENT", "invalid")
        case late if late.startswith("leaky-"):
            padding = "." * int(late.removeprefix("leaky-"))
            return _google_error(400, f"{padding}{key}", "INVALID_ARGUMENT", "invalid")
    return _common(scenario, request)


def _brave_error(status: int, code: str, detail: str) -> Response:
    body = {
        "type": "ErrorResponse",
        "error": {
            "id": "3a5e1c52-5a51-4bd2-9c6c-0c0a3c3e1a11",
            "status": status,
            "code": code,
            "detail": detail,
            "meta": {"component": "api"},
        },
        "time": 1763779200,
    }
    return JSONResponse(body, status_code=status)


def _brave_ok(request: Request) -> Response:
    count = int(request.query_params.get("count", "20"))
    results = [
        {
            "type": "search_result",
            "title": title,
            "url": link,
            "description": SNIPPET,
            "is_source_local": False,
            "language": "en",
            "family_friendly": True,
            "profile": {"name": "site"},
        }
        for link, title in _pages(min(count, 20))
    ]
    return JSONResponse(
        {
            "type": "search",
            "query": {"original": request.query_params.get("q", "")},
            "web": {"type": "search", "results": results, "family_friendly": True},
        }
    )


def _brave(scenario: str, request: Request) -> Response:
    token = request.headers.get("x-subscription-token", "")
    match scenario:
        case "ok":
            return _brave_ok(request)
        case "empty":
            return JSONResponse({"type": "search", "query": {"original": "x"}})
        case "quota":
            return _brave_error(429, "RATE_LIMITED", "Request rate limit exceeded for plan.")
        case "badkey":
            return _brave_error(
                422, "SUBSCRIPTION_TOKEN_INVALID", "The provided subscription token is invalid."
            )
        case "denied":
            return _brave_error(403, "OPTION_NOT_IN_PLAN", "The option is not in your plan.")
        case "broken":
            return _brave_error(500, "INTERNAL_ERROR", "Something went wrong on our side.")
        case "leaky":
            return _brave_error(400, "BAD_REQUEST", f"Unknown token {token}")
        case late if late.startswith("leaky-"):
            padding = "." * int(late.removeprefix("leaky-"))
            return _brave_error(400, "BAD_REQUEST", f"{padding}{token}")
    return _common(scenario, request)


def _searxng(scenario: str, request: Request) -> Response:
    match scenario:
        case "ok":
            results = [
                {
                    "url": link,
                    "title": title,
                    "content": SNIPPET,
                    "engine": "duckduckgo",
                    "engines": ["duckduckgo", "brave"],
                    "positions": [n + 1],
                    "score": 1.0,
                    "category": "general",
                    "template": "default.html",
                }
                for n, (link, title) in enumerate(_pages(14))
            ]
            return JSONResponse(_searxng_answer(request, results))
        case "empty":
            return JSONResponse(_searxng_answer(request, []))
        case "quota":
            return PlainTextResponse("Too Many Requests", status_code=429)
        case "badkey" | "denied":
            return HTMLResponse("<html><body><h1>403 Forbidden</h1></body></html>", 403)
        case "broken":
            return HTMLResponse("<html><body>Internal Server Error</body></html>", 500)
    return _common(scenario, request)


def _searxng_answer(request: Request, results: list[dict[str, object]]) -> dict[str, object]:
    return {
        "query": request.query_params.get("q", ""),
        "number_of_results": 0,
        "results": results,
        "answers": [],
        "corrections": [],
        "infoboxes": [],
        "suggestions": [],
        "unresponsive_engines": [],
    }


def _common(scenario: str, request: Request) -> Response:
    match scenario:
        case "garbage":
            return Response("{not json", media_type="application/json")
        case "shapeless":
            return JSONResponse({"items": "none", "results": 3, "web": {"results": "x"}})
        case "redirect":
            target = str(request.url).replace("/redirect/", "/ok/", 1)
            return RedirectResponse(target, status_code=302)
    return PlainTextResponse(f"unknown scenario {scenario!r}", status_code=404)


_SERVICES = {"google": _google, "brave": _brave, "searxng": _searxng}


def _app(fake: FakeSearch) -> Starlette:
    async def answer(request: Request) -> Response:
        scenario, service = request.path_params["scenario"], request.path_params["service"]
        fake.record(
            Received(service, scenario, request.query_params.multi_items(), dict(request.headers))
        )
        if scenario == "slow":
            # Held until the client gives up or the stand-ins stop (so stopping is quick).
            with anyio.move_on_after(30):
                while not fake.stopping.is_set():
                    await anyio.sleep(0.05)
            scenario = "ok"
        return _SERVICES[service](scenario, request)

    return Starlette(
        routes=[
            Route("/{scenario}/{service:str}", answer),
            Route("/{scenario}/{service:str}/search", answer),
        ]
    )


@contextmanager
def serve_search_backends() -> Iterator[FakeSearch]:
    """Run the stand-ins with uvicorn in a thread; stop them on exit."""
    fake = FakeSearch("")
    with serve_app(_app(fake)) as base_url:
        fake.base_url = base_url
        try:
            yield fake
        finally:
            fake.stopping.set()
