"""Search backends' parameter mapping, result text, and the search settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sidecar.cli import main
from sidecar.services import platform_secrets, search_backend
from sidecar.settings import Settings
from tests.support.secrets import assert_no_secret
from tools.base import JsonObject, Secret
from tools.google_search import search_query
from tools.search_backends import (
    BraveBackend,
    GoogleBackend,
    SearchBackend,
    SearchQuery,
    SearxngBackend,
)
from tools.search_text import plain_text, web_url

KEY = "AIzaSyTest-settings-key-9090"


def params(backend: SearchBackend, language: str | None, country: str | None) -> dict[str, str]:
    return dict(backend.request(SearchQuery("q", 5, language, country)).params)


@pytest.mark.parametrize(
    ("language", "country", "expected"),
    [
        ("en", None, {"lr": "lang_en", "hl": "en"}),
        ("pt-BR", "BR", {"lr": "lang_pt", "hl": "pt-BR", "gl": "br"}),
        ("zh-TW", None, {"lr": "lang_zh-TW", "hl": "zh-TW"}),
        ("zh", None, {"lr": "lang_zh-CN", "hl": "zh"}),
        (None, "DE", {"gl": "de"}),
    ],
)
def test_google_maps_language_to_lr_and_hl_and_country_to_gl(
    language: str | None, country: str | None, expected: dict[str, str]
) -> None:
    sent = params(GoogleBackend(Secret(KEY), "cx-1"), language, country)
    assert {k: v for k, v in sent.items() if k in ("lr", "hl", "gl")} == expected


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "en"),
        ("en-GB", "en-gb"),
        ("ja", "jp"),
        ("zh", "zh-hans"),
        ("zh-TW", "zh-hant"),
        ("pt", "pt-br"),
        ("pt-PT", "pt-pt"),
        ("no", "nb"),
        ("de-AT", "de"),
    ],
)
def test_brave_maps_language_to_its_own_search_lang_codes(language: str, expected: str) -> None:
    assert params(BraveBackend(Secret(KEY)), language, None)["search_lang"] == expected


@pytest.mark.parametrize(
    ("language", "country", "expected"),
    [("de", None, "de"), ("de", "CH", "de-CH"), ("en-GB", None, "en-GB"), (None, "FR", None)],
)
def test_searxng_joins_language_and_country_into_one_tag(
    language: str | None, country: str | None, expected: str | None
) -> None:
    assert (
        params(SearxngBackend("https://searx.example/"), language, country).get("language")
        == expected
    )


def test_searxng_takes_an_instance_url_with_or_without_the_search_path() -> None:
    for url in ("https://searx.example", "https://searx.example/", "https://searx.example/search"):
        request = SearxngBackend(url).request(SearchQuery("q", 5))
        assert request.url == "https://searx.example/search"


def test_a_request_repr_never_shows_the_key() -> None:
    request = GoogleBackend(Secret(KEY), "cx-1").request(SearchQuery("q", 5))
    assert_no_secret(repr(request), KEY, where="repr")
    brave = BraveBackend(Secret(KEY)).request(SearchQuery("q", 5))
    assert_no_secret(repr(brave), KEY, where="repr")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"query": "  cats "}, SearchQuery("cats", 5)),
        ({"query": "c", "num_results": 2, "language": "PT-br"}, SearchQuery("c", 2, "pt-BR")),
        ({"query": "c", "country": "ch", "language": "DE"}, SearchQuery("c", 5, "de", "CH")),
    ],
)
def test_arguments_become_a_canonical_query(arguments: JsonObject, expected: SearchQuery) -> None:
    assert search_query(arguments) == expected


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<strong>Python</strong>'s docs", "Python's docs"),
        ("one<br>two</p><p>three", "one two three"),
        ("Tom &amp; Jerry&nbsp;&#x27;s", "Tom & Jerry 's"),
        ("  spaced\n\tout  ", "spaced out"),
        ("&lt;script&gt; is text", "<script> is text"),
    ],
)
def test_plain_text_drops_tags_and_entities(html: str, text: str) -> None:
    assert plain_text(html) == text


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://example.org/a?b=c", True),
        ("HTTP://Example.org", True),
        ("/relative", False),
        ("javascript:alert(1)", False),
        ("ftp://example.org/file", False),
        ("https://", False),
        ("https://exa mple.org", False),
        ("https://[::1", False),
    ],
)
def test_only_absolute_web_urls_are_kept(url: str, kept: bool) -> None:
    assert (web_url(url) is not None) is kept


def _settings(tmp_path: Path, **options: object) -> Settings:
    return Settings(state_dir=tmp_path, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"search_backend": "google", "google_api_key": KEY}, "SIDECAR_GOOGLE_CSE_ID"),
        ({"search_backend": "google"}, "SIDECAR_GOOGLE_API_KEY and SIDECAR_GOOGLE_CSE_ID"),
        ({"search_backend": "searxng"}, "SIDECAR_SEARXNG_URL"),
        ({"search_backend": "brave", "brave_api_key": " "}, "SIDECAR_BRAVE_API_KEY"),
    ],
)
def test_a_backend_without_what_it_needs_is_refused_naming_the_setting(
    tmp_path: Path, options: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(tmp_path, **options)
    assert named in str(caught.value)


def test_a_blank_backend_is_no_backend(tmp_path: Path) -> None:
    settings = _settings(tmp_path, search_backend=" ")
    assert settings.search_backend is None
    assert search_backend(settings) is None
    assert platform_secrets(settings) == {}


def test_search_keys_are_service_secrets_and_held_by_the_search_tool(tmp_path: Path) -> None:
    google = _settings(tmp_path, search_backend="Google", google_api_key=KEY, google_cse_id="cx")
    assert KEY in google.service_secrets()
    assert isinstance(search_backend(google), GoogleBackend)
    assert platform_secrets(google) == {"google_search": (KEY,)}
    searxng = _settings(
        tmp_path, search_backend="searxng", searxng_url="https://user:pa55-word@searx.example"
    )
    assert "pa55-word" in searxng.service_secrets()
    assert platform_secrets(searxng) == {"google_search": ("pa55-word",)}


def test_a_search_url_must_be_an_absolute_web_url(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="absolute http"):
        _settings(tmp_path, brave_base_url="api.search.brave.com/res/v1/web/search")


def test_serve_stops_in_one_line_naming_the_missing_setting_without_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIDECAR_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SIDECAR_SEARCH_BACKEND", "google")
    monkeypatch.setenv("SIDECAR_GOOGLE_API_KEY", KEY)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "sidecar: invalid settings: SIDECAR_SEARCH_BACKEND=google needs SIDECAR_GOOGLE_CSE_ID"
    ]
    assert_no_secret(err, KEY, where="stderr")
