"""The one placeholder renderer: fills `{{name}}` structurally, never by pasting text.

A placeholder is `{{name}}` (whitespace allowed inside the braces); its value comes
from a `Binding`. JSON templates keep a lone placeholder's JSON type; URL templates
are split into scheme+authority, path, query and fragment before substitution, so
a value can never change the part it lands in; header values refuse CR, LF and NUL.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from tools.base import Binding, InvalidArguments, JsonValue, Rendered, RenderedUrl, Secret

__all__ = ["PlaceholderRenderer", "render_prompt"]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")
# Placeholders are masked with this character when the template's literal structure
# is analysed: it is no URL delimiter and no scheme character.
_MASK = "\x01"
_LITERAL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~-]+)?\]")
_BASE_URL = re.compile(r"(?i)(https?)://([^/?#@\s]+)/?")


@dataclass
class _Usage:
    """What went into one rendering."""

    secret: bool = False
    from_model: bool = False
    names: list[str] = field(default_factory=list)


def _lookup(name: str, bindings: Mapping[str, Binding], usage: _Usage) -> Binding:
    binding = bindings.get(name)
    if binding is None:
        raise InvalidArguments(
            f"no value for placeholder '{{{{{name}}}}}': pass it as an argument "
            "or a request variable",
            param=name,
        )
    usage.secret = usage.secret or isinstance(binding.value, Secret)
    usage.from_model = usage.from_model or binding.from_model
    usage.names.append(name)
    return binding


def _as_text(value: JsonValue | Secret) -> str:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _render_text(
    template: str, bindings: Mapping[str, Binding], usage: _Usage, *, encode: bool = False
) -> str:
    """Replace every placeholder by its value as text (percent-encoded when `encode`)."""

    def substitute(match: re.Match[str]) -> str:
        text = _as_text(_lookup(match.group(1), bindings, usage).value)
        return quote(text, safe="") if encode else text

    return _PLACEHOLDER.sub(substitute, template)


def render_prompt(template: str, values: Mapping[str, JsonValue]) -> str:
    """A prompt's `{{name}}` placeholders filled with plain values; a missing name is empty.

    Given only the plain values: a secret never reaches a prompt.
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        return _as_text(values[name]) if name in values else ""

    return _PLACEHOLDER.sub(substitute, template)


def _mask(template: str) -> str:
    """The template with each placeholder replaced by mask characters of the same length."""
    return _PLACEHOLDER.sub(lambda m: _MASK * len(m.group(0)), template)


def _first_of(text: str, chars: str, start: int = 0) -> int:
    """Index of the first of `chars` in `text` from `start`, or len(text)."""
    positions = [i for c in chars if (i := text.find(c, start)) != -1]
    return min(positions, default=len(text))


def _check_host_port(hostport: str) -> None:
    """Refuse anything but `host[:port]` (a host name, an IPv4 or a bracketed IPv6 address)."""
    if hostport.startswith("["):
        host, _, port = hostport.partition("]")
        host += "]"
        valid = _IPV6.fullmatch(host) is not None and (not port or port.startswith(":"))
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
        valid = _is_host_name(host)
    if not valid:
        raise InvalidArguments(
            "the URL's host is not a valid host name or IP address "
            "(no '/', '@', '?', '#' or whitespace allowed)"
        )
    if port and not (port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536):
        raise InvalidArguments("the URL's port is not a number between 1 and 65535")


def _is_host_name(host: str) -> bool:
    if not host or len(host) > 253:
        return False
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return False
    return _HOST_NAME.fullmatch(host) is not None


class PlaceholderRenderer:
    """Fills `{{name}}` placeholders in URLs, header values and JSON documents."""

    def json(self, template: JsonValue, bindings: Mapping[str, Binding]) -> Rendered:
        """A JSON document; a string that is one placeholder takes the value's JSON type."""
        usage = _Usage()
        return Rendered(self._json(template, bindings, usage), usage.secret)

    def _json(
        self, template: JsonValue, bindings: Mapping[str, Binding], usage: _Usage
    ) -> JsonValue:
        if isinstance(template, str):
            whole = _PLACEHOLDER.fullmatch(template)
            if whole is None:
                return _render_text(template, bindings, usage)
            value = _lookup(whole.group(1), bindings, usage).value
            return value.reveal() if isinstance(value, Secret) else copy.deepcopy(value)
        if isinstance(template, list):
            return [self._json(item, bindings, usage) for item in template]
        if isinstance(template, dict):
            out: dict[str, JsonValue] = {}
            for key, item in template.items():
                new_key = _render_text(key, bindings, usage)
                if new_key in out:
                    raise InvalidArguments(
                        f"two keys of the JSON body render to the same key {key!r}"
                    )
                out[new_key] = self._json(item, bindings, usage)
            return out
        return template

    def header(self, template: str, bindings: Mapping[str, Binding]) -> Rendered:
        """A header value; values with CR, LF or NUL are refused."""
        usage = _Usage()
        value = _render_text(template, bindings, usage)
        if any(c in value for c in "\r\n\x00"):
            raise InvalidArguments(
                "a header value may not contain a line break (CR, LF) or a NUL character",
                param=usage.names[0] if len(usage.names) == 1 else None,
            )
        return Rendered(value, usage.secret)

    def url(self, template: str, bindings: Mapping[str, Binding]) -> RenderedUrl:
        """A URL with each value percent-encoded for the part it lands in."""
        usage = _Usage()
        masked = _mask(template)
        end = _first_of(masked, "/?#")
        if end > 0 and masked.startswith("://", end - 1):
            end = _first_of(masked, "/?#", end + 2)
        origin, host_from_model = self._origin(template[:end], masked[:end], bindings, usage)
        # Path, query and fragment: every value is encoded whole, so `/`, `?`, `&`,
        # `=` and `#` in a value stay data.
        rest = _render_text(template[end:], bindings, usage, encode=True)
        url = origin + rest
        try:
            parts = urlsplit(url)
        except ValueError:
            raise InvalidArguments("the rendered URL is not a valid URL") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise InvalidArguments("the tool's URL must be an absolute http(s) URL")
        return RenderedUrl(url, usage.secret, host_from_model)

    def _origin(
        self, template: str, masked: str, bindings: Mapping[str, Binding], usage: _Usage
    ) -> tuple[str, bool]:
        """Render `scheme://authority`; say whether a model value chose the host."""
        scheme = _LITERAL_SCHEME.match(masked)
        if scheme is None:
            # A base-URL placeholder (`{{base_url}}/x`) or a partly templated scheme:
            # the whole text must be exactly `http(s)://host[:port]`.
            own = _Usage()
            text = _render_text(template, bindings, own)
            self._merge(usage, own)
            base = _BASE_URL.fullmatch(text)
            if base is None:
                raise InvalidArguments(
                    "the tool's URL must start with http(s)://host[:port]; "
                    "a base URL value may not carry a path, query, user or whitespace"
                )
            _check_host_port(base.group(2))
            return text.rstrip("/"), own.from_model
        authority_at = scheme.end()
        at = masked.rfind("@", authority_at)
        userinfo = ""
        if at != -1:
            userinfo = _render_text(template[authority_at : at + 1], bindings, usage, encode=True)
            authority_at = at + 1
        own = _Usage()
        hostport = _render_text(template[authority_at:], bindings, own)
        self._merge(usage, own)
        _check_host_port(hostport)
        return template[: scheme.end()] + userinfo + hostport, own.from_model

    @staticmethod
    def _merge(usage: _Usage, own: _Usage) -> None:
        usage.secret = usage.secret or own.secret
        usage.from_model = usage.from_model or own.from_model
        usage.names.extend(own.names)
