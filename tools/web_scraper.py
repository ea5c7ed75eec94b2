"""The `web_scraper` platform tool (SPEC §2.3): a page's main content, as a model can read it.

The fetch goes through the service's guarded client (every hop checked by the
outbound guard), bounded in bytes and in time; the reading (decoding, extraction)
runs in a worker thread, a few at a time. See `page_fetch` and `page_text`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio

from tools.base import (
    FunctionDefinition,
    JsonObject,
    TimeLimit,
    ToolContext,
    ToolResult,
    UpstreamTimeout,
)
from tools.page_fetch import FetchLimits, Page, fetch_page, host_of
from tools.page_text import OutputFormat, PageText, read_page
from tools.robots import RobotsRules

__all__ = ["ScraperOptions", "WebScraperTool"]

DESCRIPTION = (
    "Fetch a web page and return its main content (the article or body text, without "
    "navigation, ads and footers) as Markdown, plain text or clean HTML, with its title. "
    "JSON and plain-text URLs come back as they are. Does not run JavaScript."
)


@dataclass(frozen=True)
class ScraperOptions:
    """The operator's limits for the scraper."""

    fetch: FetchLimits = field(default_factory=FetchLimits)
    timeout: float = 20.0
    default_max_chars: int = 20_000
    max_chars_limit: int = 100_000
    respect_robots: bool = False
    reading_concurrency: int = 4


class WebScraperTool:
    """Fetches one URL and returns its readable content."""

    def __init__(self, options: ScraperOptions | None = None) -> None:
        self._options = options or ScraperOptions()
        self._robots = RobotsRules(self._options.fetch.user_agent)
        self._readers = anyio.CapacityLimiter(self._options.reading_concurrency)
        self._definition = FunctionDefinition("web_scraper", DESCRIPTION, self._parameters())

    @property
    def definition(self) -> FunctionDefinition:
        return self._definition

    def _parameters(self) -> dict[str, Any]:
        options = self._options
        return {
            "type": "object",
            "properties": {
                "url": {
                    "type": "string",
                    "minLength": 1,
                    "description": "The http(s) URL of the page to read.",
                },
                "format": {
                    "type": "string",
                    "enum": ["markdown", "text", "html"],
                    "description": "How to return the content (default markdown).",
                },
                "max_chars": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": options.max_chars_limit,
                    "description": (
                        f"Most characters of content (default {options.default_max_chars})."
                    ),
                },
            },
            "required": ["url"],
            "additionalProperties": False,
        }

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolResult:
        url = str(arguments["url"]).strip()
        output: OutputFormat = _format(arguments.get("format"))
        max_chars = arguments.get("max_chars")
        limit = max_chars if isinstance(max_chars, int) else self._options.default_max_chars
        page = await self._fetch(url, ctx)
        reading = partial(
            read_page,
            page.body,
            media_type=page.content_type,
            header_charset=page.charset,
            output=output,
            max_chars=limit,
            truncated=page.truncated,
            mask=ctx.mask,
        )
        text = await anyio.to_thread.run_sync(reading, limiter=self._readers)
        return ToolResult(_result(page, text))

    async def _fetch(self, url: str, ctx: ToolContext) -> Page:
        limit = TimeLimit.of(self._options.timeout, ctx.deadline)

        async def allowed(target: str) -> None:
            await self._robots.check(ctx.http, target)

        try:
            with anyio.fail_after(limit.seconds):
                return await fetch_page(
                    ctx.http,
                    url,
                    self._options.fetch,
                    allowed=allowed if self._options.respect_robots else None,
                )
        except TimeoutError:
            timeout = UpstreamTimeout(
                f"{host_of(url)} did not send the page within {limit.own:g} s"
            )
            raise limit.expired(timeout) from None


def _format(value: object) -> OutputFormat:
    if value == "text":
        return "text"
    if value == "html":
        return "html"
    return "markdown"


def _result(page: Page, text: PageText) -> JsonObject:
    result: JsonObject = {
        "url": page.url,
        "final_url": page.final_url,
        "status_code": page.status_code,
        "title": text.title,
        "content": text.content,
        "content_type": page.content_type or None,
        "truncated": page.truncated or text.truncated,
    }
    if text.notice is not None:
        result["notice"] = text.notice
    return result
