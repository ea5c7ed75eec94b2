"""Settings, read from `SIDECAR_*` environment variables once and frozen."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Allowlist", "Settings", "env_name", "parse_allowlist"]

CommaList = Annotated[tuple[str, ...], NoDecode]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_HOST_NAME = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# The settings each search backend needs (environment name: field).
_SEARCH_NEEDS = {
    "google": {
        "SIDECAR_GOOGLE_API_KEY": "google_api_key",
        "SIDECAR_GOOGLE_CSE_ID": "google_cse_id",
    },
    "searxng": {"SIDECAR_SEARXNG_URL": "searxng_url"},
    "brave": {"SIDECAR_BRAVE_API_KEY": "brave_api_key"},
}


@dataclass(frozen=True)
class Allowlist:
    """What `SIDECAR_OUTBOUND_ALLOW` lets through: host names (lower case) and networks."""

    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]


TOOL_KINDS = frozenset(
    {"http", "code", "mcp", "function", "json_schema", "current_date", "google_search"}
    | {"web_scraper"}
)


def parse_tool_concurrency(text: str) -> dict[str, int]:
    """`http=64,code=4`: the calls of each tool kind that may run at once."""
    limits: dict[str, int] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        kind, _, count = entry.partition("=")
        kind = kind.strip()
        if kind not in TOOL_KINDS:
            known = ", ".join(sorted(TOOL_KINDS))
            raise ValueError(f"unknown tool kind {kind!r} in {entry!r}; kinds: {known}")
        if not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"{entry!r} needs a whole number of calls >= 1 after '='")
        limits[kind] = int(count)
    return limits


def parse_allowlist(entries: Sequence[str]) -> Allowlist:
    """Host names, IP addresses and CIDRs; `ValueError` names an entry that is none of them."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        text = entry.strip().lower()
        try:
            networks.append(ipaddress.ip_network(text))
            continue
        except ValueError:
            if "/" in text or ":" in text:
                raise ValueError(f"invalid outbound allowlist entry {entry!r}") from None
        name = text.rstrip(".")
        # A numeric-looking last label is an odd IPv4 spelling, not a host name.
        if not _HOST_NAME.match(name) or name.rsplit(".", 1)[-1].isdigit():
            raise ValueError(f"invalid outbound allowlist entry {entry!r}")
        hosts.add(name)
    return Allowlist(frozenset(hosts), tuple(networks))


def _conventional(name: str) -> Any:
    """A setting read from `name` as is (no `SIDECAR_` prefix), or by its field name."""
    return Field(default=None, validation_alias=AliasChoices(name.lower(), name))


class Settings(BaseSettings):
    """Every setting the service reads; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SIDECAR_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    state_dir: Path = Path(".sidecar")
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=10, ge=1, le=1000)
    database_timeout: float = Field(default=5.0, gt=0, le=300)
    manifests_dir: Path = Path("manifests")
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    encryption_key: SecretStr | None = None
    outbound_allow: CommaList = ()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    shutdown_grace: float = Field(default=30.0, ge=0, le=3600)
    keep_alive_timeout: int = Field(default=75, ge=1, le=3600)
    rate_limit_per_second: float = Field(default=0.0, ge=0)
    rate_limit_burst: int = Field(default=0, ge=0)
    max_concurrent_per_key: int = Field(default=0, ge=0)
    tool_concurrency: str = ""
    max_tool_timeout: float = Field(default=600.0, gt=0, le=3600)
    batch_concurrency: int = Field(default=8, ge=1, le=256)
    batch_max_calls: int = Field(default=128, ge=1)
    http_max_response_bytes: int = Field(default=1_048_576, ge=1024)
    http_max_redirects: int = Field(default=5, ge=0, le=20)
    outbound_max_connections: int = Field(default=100, ge=1)
    sandbox_enabled: bool = True
    sandbox_concurrency: int = Field(default=4, ge=1, le=256)
    sandbox_queue: int = Field(default=64, ge=0)
    sandbox_memory_mb: int = Field(default=256, ge=32)
    sandbox_cpu_seconds: int = Field(default=120, ge=1)
    sandbox_max_output_chars: int = Field(default=65_536, ge=1024)
    scraper_timeout: float = Field(default=20.0, gt=0, le=600)
    scraper_max_bytes: int = Field(default=5_242_880, ge=1024)
    scraper_max_chars: int = Field(default=100_000, ge=100)
    scraper_default_chars: int = Field(default=20_000, ge=100)
    scraper_max_redirects: int = Field(default=5, ge=0, le=20)
    scraper_respect_robots: bool = False
    scraper_user_agent: str = Field(
        default="orq-sidecar-web-scraper/0.1 (+tool execution for LLM agents)", min_length=1
    )
    mcp_variables_file: Path | None = None
    mcp_connect_timeout: float = Field(default=10.0, gt=0, le=300)
    mcp_call_timeout: float = Field(default=60.0, gt=0, le=3600)
    mcp_idle_timeout: float = Field(default=300.0, gt=0)
    mcp_max_connections: int = Field(default=64, ge=1)
    mcp_allowed_hosts: CommaList = ()
    mcp_allowed_origins: CommaList = ()
    # Web search (`google_search`): the backend and what it needs; checked at start.
    search_backend: Literal["google", "searxng", "brave"] | None = None
    search_timeout: float = Field(default=10.0, gt=0, le=120)
    google_api_key: SecretStr | None = None
    google_cse_id: str | None = None
    google_base_url: str = "https://www.googleapis.com/customsearch/v1"
    searxng_url: str | None = None
    brave_api_key: SecretStr | None = None
    brave_base_url: str = "https://api.search.brave.com/res/v1/web/search"
    # The model core's providers: the conventional keys their own SDKs read (no
    # prefix), and a file for more (RESPONSES.md §5).
    providers_file: Path | None = None
    # The MCP tool `respond`: the model (`provider/model`) or the agent key it runs when
    # the client names neither.
    respond_model: str | None = None
    respond_agent: str | None = None
    openai_api_key: SecretStr | None = _conventional("OPENAI_API_KEY")
    openai_base_url: str | None = _conventional("OPENAI_BASE_URL")
    anthropic_api_key: SecretStr | None = _conventional("ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = _conventional("ANTHROPIC_BASE_URL")
    openrouter_api_key: SecretStr | None = _conventional("OPENROUTER_API_KEY")
    groq_api_key: SecretStr | None = _conventional("GROQ_API_KEY")
    together_api_key: SecretStr | None = _conventional("TOGETHER_API_KEY")
    mistral_api_key: SecretStr | None = _conventional("MISTRAL_API_KEY")
    deepseek_api_key: SecretStr | None = _conventional("DEEPSEEK_API_KEY")
    ollama_base_url: str | None = _conventional("OLLAMA_BASE_URL")

    @field_validator(
        "api_keys", "outbound_allow", "mcp_allowed_hosts", "mcp_allowed_origins", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("tool_concurrency")
    @classmethod
    def _tool_limits(cls, value: str) -> str:
        parse_tool_concurrency(value)  # raises ValueError naming a bad entry
        return value

    @property
    def tool_limits(self) -> dict[str, int]:
        """`tool_concurrency` as kind -> calls at once."""
        return parse_tool_concurrency(self.tool_concurrency)

    @field_validator("outbound_allow")
    @classmethod
    def _allow_entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_allowlist(value)  # raises ValueError naming a bad entry
        return value

    @field_validator(
        "search_backend",
        "google_api_key",
        "google_cse_id",
        "searxng_url",
        "brave_api_key",
        "openai_api_key",
        "openai_base_url",
        "anthropic_api_key",
        "anthropic_base_url",
        "openrouter_api_key",
        "groq_api_key",
        "together_api_key",
        "mistral_api_key",
        "deepseek_api_key",
        "ollama_base_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _postgres_address(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            if not value.strip():
                return None
            if urlsplit(value).scheme not in ("postgresql", "postgres"):
                # The value itself may hold a password: never repeated.
                raise ValueError("must be a postgresql:// (or postgres://) URL")
        return value

    @field_validator("search_backend", mode="before")
    @classmethod
    def _lower_backend(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator(
        "google_base_url",
        "searxng_url",
        "brave_base_url",
        "openai_base_url",
        "anthropic_base_url",
        "ollama_base_url",
    )
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an absolute http(s) URL")
        return value

    @model_validator(mode="after")
    def _shared_database_has_a_shared_key(self) -> Settings:
        if self.database_url is not None and self.encryption_key is None:
            raise ValueError(
                "SIDECAR_DATABASE_URL needs SIDECAR_ENCRYPTION_KEY: every replica must "
                "open the header values the others sealed (a key file in one replica's "
                "state directory would not do)"
            )
        return self

    @model_validator(mode="after")
    def _search_backend_complete(self) -> Settings:
        missing = [
            name
            for name, value in _SEARCH_NEEDS.get(self.search_backend or "", {}).items()
            if getattr(self, value) is None
        ]
        if missing:
            raise ValueError(
                f"SIDECAR_SEARCH_BACKEND={self.search_backend} needs {' and '.join(missing)}"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def mcp_hosts(self) -> tuple[str, ...]:
        """Host headers `/mcp` accepts: the configured ones, else loopback with our port."""
        return self.mcp_allowed_hosts or tuple(f"{host}:{self.port}" for host in LOOPBACK_HOSTS)

    @property
    def mcp_origins(self) -> tuple[str, ...]:
        """Origin headers `/mcp` accepts (a request without one is accepted too)."""
        if self.mcp_allowed_origins:
            return self.mcp_allowed_origins
        return tuple(f"http://{host}:{self.port}" for host in LOOPBACK_HOSTS)

    def service_secrets(self) -> list[str]:
        """The values of every secret-typed setting, and any password in a URL setting.

        Masked in every log line. Read off the fields, so that a secret setting added
        later is masked without anyone listing it here.
        """
        return [
            value for name in type(self).model_fields for value in _secrets_in(getattr(self, name))
        ]

    @property
    def searxng_password(self) -> str | None:
        """The password in `SIDECAR_SEARXNG_URL` (an instance behind basic auth), if any."""
        return urlsplit(self.searxng_url).password if self.searxng_url else None

    @property
    def database_path(self) -> Path:
        """The SQLite registry file."""
        return self.state_dir / "registry.sqlite3"

    @property
    def responses_path(self) -> Path:
        """The SQLite file of stored responses."""
        return self.state_dir / "responses.sqlite3"

    @property
    def key_path(self) -> Path:
        """Where the generated encryption key lives when none is configured."""
        return self.state_dir / "encryption.key"


def _secrets_in(value: object) -> list[str]:
    """A setting's secret values: a `SecretStr`'s, each of a tuple's, a URL's password."""
    if isinstance(value, SecretStr):  # a secret URL's password alone too
        secret = value.get_secret_value()
        return [secret, *_secrets_in(secret)]
    if isinstance(value, tuple):
        return [secret for item in value for secret in _secrets_in(item)]
    if isinstance(value, str) and "://" in value:
        password = urlsplit(value).password
        return [password] if password else []
    return []


def env_name(field: str) -> str:
    """The environment variable a setting is read from (`SIDECAR_<NAME>`, or its own)."""
    info = Settings.model_fields.get(field.lower())
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[-1])
    return f"SIDECAR_{field.upper()}"
