"""Web pages written for the scraper's tests and benchmark, served on loopback.

`serve_pages()` runs a Starlette app in a thread with:
- `/article`: a news article amid navigation, an ad, a sidebar and a footer;
- `/article/{kilobytes}`: the same article grown to about that size;
- `/latin1` and `/latin1-meta`: ISO-8859-1 bytes, no charset in the header (the
  second declares it in a `<meta>` tag);
- `/app`: a page that builds its content with JavaScript;
- `/big`: 300 KB of text; `/drip`: a body sent one byte every 0.2 s;
- `/hop/{n}`: `n` redirects, then the article; `/to-metadata`: a redirect to the
  cloud metadata address; `/binary`: a PNG; `/data.json`, `/notes.txt`, `/gone`
  (a 404 page), `/gzip` (a compressed article);
- `/robots.txt` forbidding `/private` to every agent, and `/private`.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.upstream import serve_app

__all__ = [
    "ARTICLE_SENTENCES",
    "BOILERPLATE",
    "LATIN1_TEXT",
    "article_html",
    "serve_pages",
]

ARTICLE_SENTENCES = (
    "The river Example rose by two metres overnight, flooding the lower town.",
    "Residents were moved to the school on the hill, where volunteers served soup.",
    "Engineers said the dykes held, but warned that more rain is expected on Thursday.",
)
BOILERPLATE = (
    "BUY CHEAP WATCHES NOW",
    "Most read: Celebrity cooks an egg",
    "Copyright 2026 The Daily Example",
    "Subscribe to our newsletter",
)
LATIN1_TEXT = "Le café crème coûte deux euros à la gare; la façade est très jolie, dit-elle."
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def article_html(kilobytes: int = 0) -> str:
    """The article page; with `kilobytes`, more paragraphs until about that size."""
    paragraph = " ".join(ARTICLE_SENTENCES)
    extra = ""
    if kilobytes:
        count = max(1, kilobytes * 1024 // (len(paragraph) + 10))
        extra = "".join(
            f"<p>{n}. {paragraph} The council met again on day {n}.</p>\n" for n in range(count)
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Rivers rise in the valley | The Daily Example</title>
<script>window.analytics = {{"id": 42}};</script><style>nav {{ color: red; }}</style></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/world">World</a></li>
<li><a href="/sports">Sports</a></li><li><a href="/weather">Weather</a></li></ul></nav>
<div class="ad banner">{BOILERPLATE[0]}! Limited offer, click here.</div>
<main><article>
<h1>Rivers rise in the valley</h1>
<p class="byline">By A. Writer, 21 November 2026</p>
<p>{ARTICLE_SENTENCES[0]} {ARTICLE_SENTENCES[1]}</p>
<p>{ARTICLE_SENTENCES[2]} "We are watching every metre of the bank," said the chief engineer.</p>
<h2>What happens next</h2>
<p>The council will meet on Friday to discuss new defences along the eastern shore.</p>
{extra}</article></main>
<aside class="sidebar"><h3>{BOILERPLATE[1]}</h3><ul><li>Ten recipes</li></ul></aside>
<footer><p>{BOILERPLATE[2]}. All rights reserved.</p><p>{BOILERPLATE[3]}</p>
<a href="/privacy">Privacy</a> | <a href="/terms">Terms</a></footer>
</body></html>"""


def _latin1_page(meta: bool) -> bytes:
    head = '<meta charset="iso-8859-1">' if meta else ""
    body = "".join(f"<p>{LATIN1_TEXT} ({n})</p>" for n in range(12))
    page = (
        f"<!DOCTYPE html><html><head>{head}<title>Gare</title></head>"
        f"<body><article>{body}</article></body></html>"
    )
    return page.encode("iso-8859-1")


APP_PAGE = """<!DOCTYPE html><html><head><title>Dashboard</title>
<script src="/static/app.3f9a.js" defer></script></head>
<body><noscript>You need to enable JavaScript to run this app.</noscript>
<div id="root"></div></body></html>"""


def _app() -> Starlette:
    async def article(request: Request) -> Response:
        kilobytes = int(request.path_params.get("kilobytes", 0))
        return Response(article_html(kilobytes), media_type="text/html; charset=utf-8")

    async def latin1(request: Request) -> Response:
        return Response(_latin1_page(meta=False), headers={"content-type": "text/html"})

    async def latin1_meta(request: Request) -> Response:
        return Response(_latin1_page(meta=True), headers={"content-type": "text/html"})

    async def app_page(request: Request) -> Response:
        return Response(APP_PAGE, media_type="text/html")

    async def big(request: Request) -> Response:
        return Response("lorem ipsum " * 25_000, media_type="text/plain")

    async def drip(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"<html><body><p>"
            for _ in range(1000):
                await anyio.sleep(0.2)
                yield b"x"

        return StreamingResponse(body(), media_type="text/html")

    async def hop(request: Request) -> Response:
        left = int(request.path_params["n"])
        target = "/article" if left <= 0 else f"/hop/{left - 1}"
        return RedirectResponse(target, status_code=302)

    async def to_metadata(request: Request) -> Response:
        return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)

    async def binary(request: Request) -> Response:
        return Response(PNG, media_type="image/png")

    async def data(request: Request) -> Response:
        return JSONResponse({"city": "Amsterdam", "rain_mm": 12.5})

    async def notes(request: Request) -> Response:
        return Response("first line\nsecond line\n", media_type="text/plain")

    async def gone(request: Request) -> Response:
        page = "<html><head><title>Not found</title></head><body><p>No such page.</p></body></html>"
        return Response(page, status_code=404, media_type="text/html")

    async def compressed(request: Request) -> Response:
        return Response(
            gzip.compress(article_html().encode()),
            headers={"content-type": "text/html; charset=utf-8", "content-encoding": "gzip"},
        )

    async def robots(request: Request) -> Response:
        return Response("User-agent: *\nDisallow: /private\n", media_type="text/plain")

    async def private(request: Request) -> Response:
        return Response("<html><body><p>Private.</p></body></html>", media_type="text/html")

    return Starlette(
        routes=[
            Route("/article", article),
            Route("/article/{kilobytes:int}", article),
            Route("/latin1", latin1),
            Route("/latin1-meta", latin1_meta),
            Route("/app", app_page),
            Route("/big", big),
            Route("/drip", drip),
            Route("/hop/{n:int}", hop),
            Route("/to-metadata", to_metadata),
            Route("/binary", binary),
            Route("/data.json", data),
            Route("/notes.txt", notes),
            Route("/gone", gone),
            Route("/gzip", compressed),
            Route("/robots.txt", robots),
            Route("/private", private),
        ]
    )


@contextmanager
def serve_pages() -> Iterator[str]:
    """The pages' server on loopback; yields its base URL."""
    with serve_app(_app()) as base_url:
        yield base_url
