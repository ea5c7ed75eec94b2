"""Which providers there are: the conventional keys, the providers file, and their adapters.

Without any file, a conventional key names a provider (`OPENAI_API_KEY` gives
`openai`, `ANTHROPIC_API_KEY` `anthropic`, ...); `ollama` is always there, at
`OLLAMA_BASE_URL` or `http://127.0.0.1:11434`. `SIDECAR_PROVIDERS_FILE` (YAML,
`providers:` a list) adds more or changes these: `name`, `wire`, `base_url`,
`api_key_env` (the name of the variable holding the key, never the key), `headers`,
and `models` with prices. An entry named like a conventional provider keeps what it
does not say (its wire, address and key).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sidecar.llm.providers.anthropic import AnthropicMessages
from sidecar.llm.providers.base import Provider
from sidecar.llm.providers.http import Endpoint, Transport
from sidecar.llm.providers.openai_chat import OpenAIChat
from sidecar.llm.providers.openai_responses import OpenAIResponses
from sidecar.settings import Settings
from sidecar.strict_yaml import load_yaml
from tools.base import Secret

__all__ = [
    "Price",
    "ProviderSpec",
    "ProvidersFileError",
    "Wire",
    "build_provider",
    "provider_specs",
]

Wire: TypeAlias = Literal["openai-chat", "openai-responses", "anthropic"]
_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class ProvidersFileError(ValueError):
    """`SIDECAR_PROVIDERS_FILE` cannot be read or does not validate."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None


@dataclass(frozen=True)
class ProviderSpec:
    """One provider: how to reach it, its key (or the setting that lacks it), its prices."""

    name: str
    wire: Wire
    base_url: str
    key: Secret | None = None
    key_setting: str | None = None  # the variable the key comes from (for messages)
    needs_key: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    prices: Mapping[str, Price] = field(default_factory=dict)


@dataclass(frozen=True)
class _Conventional:
    wire: Wire
    base_url: str
    key_setting: str | None


_CONVENTIONAL: dict[str, _Conventional] = {
    "openai": _Conventional("openai-chat", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": _Conventional("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    "openrouter": _Conventional(
        "openai-chat", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"
    ),
    "groq": _Conventional("openai-chat", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "together": _Conventional("openai-chat", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "mistral": _Conventional("openai-chat", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "deepseek": _Conventional("openai-chat", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "ollama": _Conventional("openai-chat", "http://127.0.0.1:11434/v1", None),
}


class _PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)


class _FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    wire: Wire | None = None
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    headers: dict[str, str] = Field(default_factory=dict)
    models: dict[str, _PriceEntry] = Field(default_factory=dict)


class _ProvidersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    providers: list[_FileEntry] = Field(default_factory=list)


def provider_specs(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> dict[str, ProviderSpec]:
    """Every configured provider, by name; `ProvidersFileError` names a bad file."""
    env = os.environ if environ is None else environ
    specs = {
        name: spec
        for name, conventional in _CONVENTIONAL.items()
        if (spec := _conventional(name, conventional, settings)) is not None
    }
    if settings.providers_file is not None:
        for entry in _read_file(settings.providers_file).providers:
            specs[entry.name] = _from_file(entry, env)
    return specs


def build_provider(spec: ProviderSpec, client: Transport) -> Provider:
    """The adapter for a provider's wire."""
    headers = dict(spec.headers)
    key = spec.key.reveal() if spec.key is not None else None
    match spec.wire:
        case "anthropic":
            if key is not None:
                headers.setdefault("x-api-key", key)
            headers.setdefault("anthropic-version", "2023-06-01")
            return AnthropicMessages(client, Endpoint(spec.name, spec.base_url, headers))
        case "openai-responses":
            if key is not None:
                headers.setdefault("authorization", f"Bearer {key}")
            return OpenAIResponses(client, Endpoint(spec.name, spec.base_url, headers))
        case "openai-chat":
            if key is not None:
                headers.setdefault("authorization", f"Bearer {key}")
            # OpenAI's reasoning models refuse `max_tokens`; compatible servers know only it.
            field_name = "max_completion_tokens" if spec.name == "openai" else "max_tokens"
            endpoint = Endpoint(spec.name, spec.base_url, headers)
            return OpenAIChat(client, endpoint, max_tokens_field=field_name)


def _conventional(
    name: str, conventional: _Conventional, settings: Settings
) -> ProviderSpec | None:
    if conventional.key_setting is None:  # ollama: no key, always there
        base = settings.ollama_base_url
        url = conventional.base_url if base is None else _with_v1(base)
        return ProviderSpec(name, conventional.wire, url, needs_key=False)
    key = getattr(settings, f"{name}_api_key", None)
    if key is None:
        return None
    base_url = getattr(settings, f"{name}_base_url", None) or conventional.base_url
    return ProviderSpec(
        name,
        conventional.wire,
        base_url,
        key=Secret(key.get_secret_value()),
        key_setting=conventional.key_setting,
    )


def _with_v1(base_url: str) -> str:
    """Ollama's OpenAI-compatible routes live under `/v1`; its URL is often given without."""
    trimmed = base_url.rstrip("/")
    return trimmed if trimmed.endswith("/v1") else f"{trimmed}/v1"


def _read_file(path: Path) -> _ProvidersFile:
    try:
        document = load_yaml(path.read_text(encoding="utf-8"))
        return _ProvidersFile.model_validate(document or {})
    except OSError as exc:
        raise ProvidersFileError(f"{path}: cannot be read ({exc.strerror})") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise ProvidersFileError(f"{path}: {problems}") from None
    except yaml.YAMLError as exc:
        raise ProvidersFileError(f"{path}: not valid YAML: {exc}") from None


def _from_file(entry: _FileEntry, env: Mapping[str, str]) -> ProviderSpec:
    conventional = _CONVENTIONAL.get(entry.name)
    wire = entry.wire or (conventional.wire if conventional else None)
    base_url = entry.base_url or (conventional.base_url if conventional else None)
    if wire is None or base_url is None:
        raise ProvidersFileError(f"provider {entry.name!r} needs a wire and a base_url")
    key_setting = entry.api_key_env or (conventional.key_setting if conventional else None)
    value = env.get(key_setting) if key_setting else None
    prices = {
        model: Price(price.input_per_mtok, price.output_per_mtok, price.cached_input_per_mtok)
        for model, price in entry.models.items()
    }
    return ProviderSpec(
        entry.name,
        wire,
        base_url,
        key=Secret(value) if value else None,
        key_setting=key_setting,
        needs_key=key_setting is not None,
        headers=entry.headers,
        prices=prices,
    )
