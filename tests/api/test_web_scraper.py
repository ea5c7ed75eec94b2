"""The web_scraper tool through the API, against pages served on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.settings import Settings
from tests.api.support import make_settings, open_client
from tests.support.pages import (
    ARTICLE_SENTENCES,
    BOILERPLATE,
    LATIN1_TEXT,
    serve_pages,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    with serve_pages() as base_url:
        yield base_url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, scraper_timeout=1.5, scraper_max_bytes=100_000)


async def scrape(client: httpx.AsyncClient, url: str, **arguments: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/tools/execute",
        json={"tool": {"type": "orq:web_scraper"}, "arguments": {"url": url, **arguments}},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def result_of(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["status"] == "completed", answer
    result: dict[str, Any] = answer["result"]
    return result


async def test_an_article_keeps_its_text_and_loses_the_boilerplate(
    client: httpx.AsyncClient, pages: str
) -> None:
    result = result_of(await scrape(client, f"{pages}/article"))
    assert result["title"] == "Rivers rise in the valley"
    assert result["status_code"] == 200
    assert result["content_type"] == "text/html"
    assert result["truncated"] is False
    content = result["content"]
    assert all(sentence in content for sentence in ARTICLE_SENTENCES)
    assert "## What happens next" in content, "headings come back as Markdown"
    for boilerplate in BOILERPLATE:
        assert boilerplate not in content
    assert "window.analytics" not in content


@pytest.mark.parametrize("output", ["text", "html"])
async def test_text_and_html_formats_hold_the_same_main_content(
    client: httpx.AsyncClient, pages: str, output: str
) -> None:
    content = result_of(await scrape(client, f"{pages}/article", format=output))["content"]
    assert ARTICLE_SENTENCES[0] in content
    assert BOILERPLATE[0] not in content
    assert ("<p>" in content) == (output == "html")
    assert "##" not in content


@pytest.mark.parametrize("path", ["/latin1", "/latin1-meta"])
async def test_a_latin1_page_without_a_charset_header_is_decoded(
    client: httpx.AsyncClient, pages: str, path: str
) -> None:
    content = result_of(await scrape(client, pages + path))["content"]
    assert LATIN1_TEXT in content
    assert "\ufffd" not in content


async def test_a_page_built_by_javascript_gets_an_honest_notice(
    client: httpx.AsyncClient, pages: str
) -> None:
    result = result_of(await scrape(client, f"{pages}/app"))
    assert result["title"] == "Dashboard"
    assert "JavaScript" in result["notice"]
    assert len(result["content"]) < 200


async def test_a_body_over_the_byte_cap_is_cut_and_says_so(
    client: httpx.AsyncClient, pages: str
) -> None:
    result = result_of(await scrape(client, f"{pages}/big", max_chars=100_000))
    assert result["truncated"] is True
    assert len(result["content"]) == 100_000, "the byte cap (100 KB) cut the body"


async def test_content_over_max_chars_is_cut_and_says_so(
    client: httpx.AsyncClient, pages: str
) -> None:
    result = result_of(await scrape(client, f"{pages}/article", max_chars=50))
    assert result["truncated"] is True
    assert len(result["content"]) == 50


async def test_a_redirect_chain_is_followed_to_the_end(
    client: httpx.AsyncClient, pages: str
) -> None:
    result = result_of(await scrape(client, f"{pages}/hop/3"))
    assert result["url"] == f"{pages}/hop/3"
    assert result["final_url"] == f"{pages}/article"
    assert ARTICLE_SENTENCES[1] in result["content"]


async def test_more_than_five_redirects_fail(client: httpx.AsyncClient, pages: str) -> None:
    answer = await scrape(client, f"{pages}/hop/6")
    assert answer["error"]["code"] == "too_many_redirects"


async def test_a_redirect_to_a_blocked_address_is_refused(
    client: httpx.AsyncClient, pages: str
) -> None:
    answer = await scrape(client, f"{pages}/to-metadata")
    assert answer["error"]["code"] == "outbound_blocked"
    assert "169.254.169.254" in answer["error"]["message"]


async def test_a_blocked_address_is_refused_before_any_request(client: httpx.AsyncClient) -> None:
    answer = await scrape(client, "http://10.0.0.7/admin")
    assert answer["error"]["code"] == "outbound_blocked"


async def test_a_server_that_drips_bytes_times_out(client: httpx.AsyncClient, pages: str) -> None:
    answer = await scrape(client, f"{pages}/drip")
    assert answer["error"]["code"] == "upstream_timeout"
    assert "1.5 s" in answer["error"]["message"]


async def test_a_binary_download_is_refused_by_its_type(
    client: httpx.AsyncClient, pages: str
) -> None:
    answer = await scrape(client, f"{pages}/binary")
    assert answer["error"]["code"] == "unsupported_content_type"
    assert "image/png" in answer["error"]["message"]


async def test_json_and_plain_text_pass_through(client: httpx.AsyncClient, pages: str) -> None:
    data = result_of(await scrape(client, f"{pages}/data.json"))
    assert data["content"] == '{"city":"Amsterdam","rain_mm":12.5}'
    assert data["content_type"] == "application/json"
    notes = result_of(await scrape(client, f"{pages}/notes.txt"))
    assert notes["content"] == "first line\nsecond line\n"
    assert notes["title"] is None


async def test_an_error_page_is_a_completed_call_with_its_status(
    client: httpx.AsyncClient, pages: str
) -> None:
    result = result_of(await scrape(client, f"{pages}/gone"))
    assert result["status_code"] == 404
    assert "No such page." in result["content"]


async def test_a_compressed_page_is_decoded(client: httpx.AsyncClient, pages: str) -> None:
    result = result_of(await scrape(client, f"{pages}/gzip"))
    assert ARTICLE_SENTENCES[2] in result["content"]


async def test_a_url_that_is_not_http_is_an_argument_error(client: httpx.AsyncClient) -> None:
    answer = await scrape(client, "file:///etc/passwd")
    assert answer["error"]["code"] == "invalid_arguments"


async def test_robots_txt_is_honoured_when_the_operator_asks(tmp_path: Path, pages: str) -> None:
    settings = make_settings(tmp_path, scraper_respect_robots=True)
    async with open_client(settings) as client:
        refused = await scrape(client, f"{pages}/private")
        allowed = await scrape(client, f"{pages}/article")
    assert refused["error"]["code"] == "robots_disallowed"
    assert allowed["status"] == "completed"


async def test_robots_txt_is_not_read_by_default(client: httpx.AsyncClient, pages: str) -> None:
    assert result_of(await scrape(client, f"{pages}/private"))["content"] == "Private."


async def test_the_request_carries_a_descriptive_user_agent(
    tmp_path: Path,
) -> None:
    from tests.support.upstream import serve_recording_upstream

    with serve_recording_upstream() as upstream:
        async with open_client(make_settings(tmp_path)) as client:
            await scrape(client, f"{upstream.base_url}/echo/page")
    agent = upstream.requests[-1].headers["user-agent"]
    assert agent.startswith("orq-sidecar-web-scraper/")


async def test_resolve_shows_the_scrapers_definition(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/tools/resolve", json={"tools": [{"type": "orq:web_scraper"}]})
    tool = response.json()["tools"][0]
    assert tool["name"] == "web_scraper"
    assert tool["parameters"]["required"] == ["url"]
    assert tool["parameters"]["properties"]["format"]["enum"] == ["markdown", "text", "html"]


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(settings) as opened:
        yield opened
