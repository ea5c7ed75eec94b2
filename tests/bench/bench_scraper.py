"""Scraping a 200 KB and a 2 MB article from loopback: the total, and the extraction's share.

The pages are the test article grown to size (`tests/support/pages.py`), served by
uvicorn in a thread. For each size, sequential runs after a warm-up, interleaved:
  (a) the raw fetch: a GET of the page through the same guarded client, body read
      (the baseline);
  (b) `web_scraper` end to end: fetch, decode, extract to Markdown (in a worker thread);
  (c) the reading alone (`read_page` on the fetched bytes: decoding and extraction).
Printed: p50 of each, (b)/(a), and the share of (c) in (b).
Run with `python -m tests.bench` or `python -m tests.bench.bench_scraper`.
"""

from __future__ import annotations

import statistics

import anyio

from sidecar.outbound import OutboundPolicy, guarded_client
from sidecar.templating import PlaceholderRenderer
from tests.bench.timing import timed
from tests.support.pages import serve_pages
from tools.base import Deadline, ToolContext
from tools.page_fetch import FetchLimits
from tools.page_text import read_page
from tools.web_scraper import ScraperOptions, WebScraperTool

SIZES_KB = (200, 2048)
RUNS = {200: 40, 2048: 12}
WARM_UP = 3


async def measure(base_url: str, kilobytes: int) -> None:
    url = f"{base_url}/article/{kilobytes}"
    options = ScraperOptions(fetch=FetchLimits(max_bytes=8 * 1_048_576), max_chars_limit=5_000_000)
    tool = WebScraperTool(options)
    async with guarded_client(OutboundPolicy(["127.0.0.1"])) as client:
        body = (await client.get(url)).content

        async def fetch() -> object:
            response = await client.get(url)
            response.raise_for_status()
            return response.content

        async def scrape() -> object:
            ctx = ToolContext("bench", Deadline.after(60), {}, client, PlaceholderRenderer())
            result = await tool.run({"url": url, "max_chars": 5_000_000}, ctx)
            assert isinstance(result.value, dict)
            assert "Rivers rise" in str(result.value["content"])
            return result

        async def read() -> object:
            return read_page(
                body,
                media_type="text/html",
                header_charset="utf-8",
                output="markdown",
                max_chars=5_000_000,
            )

        variants = {"(a) raw fetch": fetch, "(b) web_scraper": scrape, "(c) reading alone": read}
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(WARM_UP):
            for call in variants.values():
                await call()
        for _ in range(RUNS[kilobytes]):
            for name, call in variants.items():
                times[name].extend(await timed(call, 1, warm_up=0))
    p50 = {name: statistics.median(values) for name, values in times.items()}
    print(f"  article of {len(body) / 1024:,.0f} KB, {RUNS[kilobytes]} runs each:")
    for name, value in p50.items():
        print(f"    {name:<20} p50 {value:8.2f} ms")
    total = p50["(b) web_scraper"]
    print(
        f"    web_scraper / raw fetch = {total / p50['(a) raw fetch']:.1f}; "
        f"reading's share of the total = {p50['(c) reading alone'] / total:.0%}"
    )


async def run(base_url: str) -> None:
    for kilobytes in SIZES_KB:
        await measure(base_url, kilobytes)


def main() -> None:
    """Print the p50 of each variant per page size, the ratio and the extraction's share."""
    with serve_pages() as base_url:
        anyio.run(run, base_url, backend_options={"use_uvloop": True})


if __name__ == "__main__":
    main()
