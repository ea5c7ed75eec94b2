"""robots.txt for the scraper, when the operator asks for it: one answer per origin, kept a while.

Read as search engines read it: a 2xx file is parsed; 401 and 403 forbid the whole
site; any other 4xx (no file) allows it; a 5xx, or a file that cannot be fetched,
forbids it for now (the site could not say).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from tools.base import ToolError
from tools.page_fetch import FetchLimits, fetch_page, host_of

__all__ = ["RobotsRules"]

ROBOTS_MAX_BYTES = 524_288
ORIGINS_KEPT = 256
FORBID_ALL = ["User-agent: *", "Disallow: /"]


class RobotsRules:
    """Decides whether the scraper may fetch a URL, by the site's robots.txt."""

    def __init__(self, user_agent: str, *, ttl: float = 600.0) -> None:
        self._agent = user_agent.split("/", 1)[0]
        self._limits = FetchLimits(max_bytes=ROBOTS_MAX_BYTES, user_agent=user_agent)
        self._ttl = ttl
        self._rules: OrderedDict[str, tuple[float, RobotFileParser]] = OrderedDict()

    async def check(self, client: httpx.AsyncClient, url: str) -> None:
        """Raise `robots_disallowed` when the site's robots.txt forbids `url` to this agent."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        rules = await self._rules_of(client, origin)
        if not rules.can_fetch(self._agent, url):
            raise ToolError(
                f"{host_of(url)}'s robots.txt does not allow this page to be fetched",
                code="robots_disallowed",
            )

    async def _rules_of(self, client: httpx.AsyncClient, origin: str) -> RobotFileParser:
        kept = self._rules.get(origin)
        if kept is not None and kept[0] > time.monotonic():
            self._rules.move_to_end(origin)
            return kept[1]
        rules = await self._fetch(client, origin)
        self._rules[origin] = (time.monotonic() + self._ttl, rules)
        if len(self._rules) > ORIGINS_KEPT:
            self._rules.popitem(last=False)
        return rules

    async def _fetch(self, client: httpx.AsyncClient, origin: str) -> RobotFileParser:
        rules = RobotFileParser()
        try:
            page = await fetch_page(client, f"{origin}/robots.txt", self._limits)
        except ToolError:
            rules.parse(FORBID_ALL)
            return rules
        if page.status_code in (401, 403) or page.status_code >= 500:
            rules.parse(FORBID_ALL)
        elif page.status_code >= 400:
            rules.parse([])
        else:
            rules.parse(page.body.decode("utf-8", errors="replace").splitlines())
        return rules
