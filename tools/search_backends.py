"""Search backends: one small adapter per search service, behind one narrow protocol.

An adapter knows its service's formats and nothing else: it turns a `SearchQuery`
into the `SearchRequest` the service expects, reads a successful answer into
`SearchHit`s, and says what a failed answer means (`SearchFailure`). The
`google_search` tool sends the request through the guarded client and never
looks at which service it talks to.

    GoogleBackend    Google Programmable Search, Custom Search JSON API (key in the query)
    SearxngBackend   a SearXNG instance's JSON API (`format=json`)
    BraveBackend     Brave Search API, web search (key in `X-Subscription-Token`)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from tools.base import JsonValue, Secret

__all__ = [
    "BraveBackend",
    "FailureKind",
    "GoogleBackend",
    "SearchBackend",
    "SearchFailure",
    "SearchHit",
    "SearchQuery",
    "SearchRequest",
    "SearxngBackend",
    "UnexpectedAnswer",
]

GOOGLE_URL = "https://www.googleapis.com/customsearch/v1"
BRAVE_URL = "https://api.search.brave.com/res/v1/web/search"


@dataclass(frozen=True)
class SearchQuery:
    """What the model asked for, checked and in canonical form."""

    text: str
    num_results: int
    language: str | None = None  # "en", "pt-BR" (language lower case, region upper case)
    country: str | None = None  # ISO 3166-1 alpha-2, upper case: "DE"

    @property
    def base_language(self) -> str | None:
        """The language without its region: "pt" for "pt-BR"."""
        return None if self.language is None else self.language.split("-", 1)[0]

    @property
    def region(self) -> str | None:
        """The region of the language tag ("BR" for "pt-BR"), else None."""
        if self.language is None or "-" not in self.language:
            return None
        return self.language.split("-", 1)[1]


@dataclass(frozen=True, repr=False)
class SearchRequest:
    """A GET request to a search service; it may carry a key, so its repr shows only the URL."""

    url: str
    params: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return f"SearchRequest({self.url!r}, params=[...], headers=[...])"


@dataclass(frozen=True)
class SearchHit:
    """One result as the service sent it (the text may hold HTML)."""

    title: str
    url: str
    snippet: str


class UnexpectedAnswer(Exception):
    """A successful answer that is not in the service's format."""


class FailureKind(Enum):
    """What a failed answer means; the value is the error code the model reads."""

    QUOTA = "search_quota_exceeded"
    AUTH = "search_auth_failed"
    ERROR = "search_error"


@dataclass(frozen=True)
class SearchFailure:
    """A failed answer: its kind, the service's own message (may be empty), a hint."""

    kind: FailureKind
    detail: str = ""
    hint: str = ""


class SearchBackend(Protocol):
    """A search service's formats."""

    @property
    def name(self) -> str:
        """The backend's name, shown in results: `google`, `searxng`, `brave`."""
        ...

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values this backend sends that must never be shown (its key)."""
        ...

    def request(self, query: SearchQuery) -> SearchRequest:
        """The request for `query`, the key revealed into it."""
        ...

    def hits(self, answer: JsonValue) -> list[SearchHit]:
        """The results of a successful answer; `UnexpectedAnswer` when it is not its format."""
        ...

    def failure(self, status: int, answer: JsonValue) -> SearchFailure:
        """What a non-2xx answer means; `answer` is its JSON body, or None."""
        ...


def _by_status(status: int) -> FailureKind:
    if status == 429:
        return FailureKind.QUOTA
    if status in (401, 403):
        return FailureKind.AUTH
    return FailureKind.ERROR


def _object(value: JsonValue, what: str) -> dict[str, JsonValue]:
    if not isinstance(value, dict):
        raise UnexpectedAnswer(f"{what} is not a JSON object")
    return value


def _list(value: JsonValue, what: str) -> list[JsonValue]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UnexpectedAnswer(f"{what} is not a JSON array")
    return value


def _text(entry: dict[str, JsonValue], key: str) -> str:
    value = entry.get(key)
    return value if isinstance(value, str) else ""


def _hits(entries: list[JsonValue], title: str, url: str, snippet: str) -> list[SearchHit]:
    found = []
    for entry in entries:
        if isinstance(entry, dict):
            found.append(SearchHit(_text(entry, title), _text(entry, url), _text(entry, snippet)))
    return found


class GoogleBackend:
    """Google Programmable Search through the Custom Search JSON API.

    `num` takes `num_results` (the API's maximum is 10); `language` becomes `lr`
    (`lang_xx`, results in that language) and `hl` (interface language); `country`
    becomes `gl` (results boosted for that country).
    """

    name = "google"

    def __init__(self, api_key: Secret, engine_id: str, base_url: str = GOOGLE_URL) -> None:
        self._key = api_key
        self._engine = engine_id
        self._url = base_url

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._key.reveal(),)

    def request(self, query: SearchQuery) -> SearchRequest:
        params = [("q", query.text), ("num", str(query.num_results)), ("cx", self._engine)]
        if query.language is not None:
            params += [("lr", _google_lr(query)), ("hl", query.language)]
        if query.country is not None:
            params.append(("gl", query.country.lower()))
        params.append(("key", self._key.reveal()))
        return SearchRequest(self._url, tuple(params))

    def hits(self, answer: JsonValue) -> list[SearchHit]:
        # A search without results has no `items` at all.
        items = _list(_object(answer, "the answer").get("items"), "items")
        return _hits(items, "title", "link", "snippet")

    def failure(self, status: int, answer: JsonValue) -> SearchFailure:
        error = answer.get("error") if isinstance(answer, dict) else None
        if not isinstance(error, dict):
            return SearchFailure(_by_status(status))
        reasons = {
            entry.get("reason")
            for key in ("errors", "details")
            for entry in _list(error.get(key), key)
            if isinstance(entry, dict)
        }
        message = _text(error, "message")
        if status == 429 or reasons & _GOOGLE_QUOTA_REASONS:
            return SearchFailure(FailureKind.QUOTA, message)
        # An unknown key is a 400 with the reason API_KEY_INVALID.
        if status in (401, 403) or reasons & _GOOGLE_KEY_REASONS:
            return SearchFailure(FailureKind.AUTH, message)
        return SearchFailure(FailureKind.ERROR, message)


_GOOGLE_QUOTA_REASONS = frozenset(
    {"rateLimitExceeded", "dailyLimitExceeded", "userRateLimitExceeded", "quotaExceeded"}
)
_GOOGLE_KEY_REASONS = frozenset({"API_KEY_INVALID", "keyInvalid", "API_KEY_SERVICE_BLOCKED"})


def _google_lr(query: SearchQuery) -> str:
    # `lr` names Chinese by script region (lang_zh-CN, lang_zh-TW); every other language bare.
    if query.base_language == "zh":
        return "lang_zh-TW" if query.region in ("TW", "HK", "MO") else "lang_zh-CN"
    return f"lang_{query.base_language}"


class SearxngBackend:
    """A SearXNG instance's JSON API (`/search?format=json`).

    SearXNG has no result-count parameter: the first page is asked for and cut to
    `num_results`. `language` and `country` become one `language` tag (`de-CH`);
    a country without a language is not sent (SearXNG has no region-only setting).
    """

    name = "searxng"

    def __init__(self, base_url: str, password: str | None = None) -> None:
        trimmed = base_url.rstrip("/")
        self._url = trimmed if trimmed.endswith("/search") else f"{trimmed}/search"
        self._password = password

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._password,) if self._password else ()

    def request(self, query: SearchQuery) -> SearchRequest:
        params = [("q", query.text), ("format", "json"), ("pageno", "1")]
        if query.language is not None:
            region = query.country or query.region
            tag = query.base_language if region is None else f"{query.base_language}-{region}"
            params.append(("language", str(tag)))
        return SearchRequest(self._url, tuple(params), (("Accept", "application/json"),))

    def hits(self, answer: JsonValue) -> list[SearchHit]:
        results = _list(_object(answer, "the answer").get("results"), "results")
        return _hits(results, "title", "url", "content")

    def failure(self, status: int, answer: JsonValue) -> SearchFailure:
        if status == 403:
            return SearchFailure(
                FailureKind.AUTH,
                hint=(
                    "the instance refuses the JSON format: it is probably disabled; "
                    "add `json` to `search.formats` in the instance's settings.yml"
                ),
            )
        if status == 429:
            return SearchFailure(
                FailureKind.QUOTA,
                hint="the instance's rate limiter refused the request; try again later",
            )
        return SearchFailure(_by_status(status))


class BraveBackend:
    """Brave Search API, web search.

    `count` takes `num_results`; `language` becomes `search_lang` in Brave's own
    codes (`ja` is `jp`, Chinese is `zh-hans`/`zh-hant`, `pt-br`/`pt-pt`, `en-gb`);
    `country` becomes `country`. Snippets come from `description`.
    """

    name = "brave"

    def __init__(self, api_key: Secret, base_url: str = BRAVE_URL) -> None:
        self._key = api_key
        self._url = base_url

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._key.reveal(),)

    def request(self, query: SearchQuery) -> SearchRequest:
        params = [("q", query.text), ("count", str(query.num_results))]
        if query.language is not None:
            params.append(("search_lang", _brave_language(query)))
        if query.country is not None:
            params.append(("country", query.country))
        headers = (("Accept", "application/json"), ("X-Subscription-Token", self._key.reveal()))
        return SearchRequest(self._url, tuple(params), headers)

    def hits(self, answer: JsonValue) -> list[SearchHit]:
        # `web` is absent when the query found no web results.
        web = _object(answer, "the answer").get("web")
        results = _list(_object(web, "web").get("results"), "web.results") if web else []
        return _hits(results, "title", "url", "description")

    def failure(self, status: int, answer: JsonValue) -> SearchFailure:
        error = answer.get("error") if isinstance(answer, dict) else None
        if not isinstance(error, dict):
            return SearchFailure(_by_status(status))
        code, detail = _text(error, "code"), _text(error, "detail")
        # Brave answers an unknown or revoked key with 422 SUBSCRIPTION_TOKEN_INVALID.
        if code.startswith("SUBSCRIPTION_TOKEN"):
            return SearchFailure(FailureKind.AUTH, detail)
        if status == 429 or code in ("RATE_LIMITED", "QUOTA_LIMITED"):
            return SearchFailure(FailureKind.QUOTA, detail)
        return SearchFailure(_by_status(status), detail)


_BRAVE_LANGUAGES = {"ja": "jp", "no": "nb", "zh": "zh-hans"}
_BRAVE_REGIONAL = {
    ("zh", "TW"): "zh-hant",
    ("zh", "HK"): "zh-hant",
    ("zh", "MO"): "zh-hant",
    ("pt", "PT"): "pt-pt",
    ("en", "GB"): "en-gb",
}


def _brave_language(query: SearchQuery) -> str:
    base = str(query.base_language)
    regional = _BRAVE_REGIONAL.get((base, query.region or ""))
    if regional is not None:
        return regional
    if base == "pt":
        return "pt-br"
    return _BRAVE_LANGUAGES.get(base, base)
