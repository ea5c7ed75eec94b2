"""Turns tool definitions into runnable tools, revealing stored secrets at the last moment."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.crypto import DecryptionError, SecretBox
from sidecar.definitions import (
    MASKED,
    CodeToolDefinition,
    FunctionToolDefinition,
    HttpToolDefinition,
    ToolDefinition,
)
from sidecar.errors import BadRequest, SidecarError
from tools.base import Tool
from tools.code import CodeTool
from tools.function import FunctionTool
from tools.http import HeaderValue, HttpBlueprint, HttpSpec, HttpTool

__all__ = ["MASKED", "Built", "HttpLimits", "ToolFactory"]


@dataclass(frozen=True)
class HttpLimits:
    """Limits every HTTP tool gets from the service's settings."""

    max_response_bytes: int = 1_048_576
    max_redirects: int = 5


@dataclass(frozen=True)
class Built:
    """A runnable tool and the stored secrets it holds (to be redacted)."""

    tool: Tool
    held_secrets: tuple[str, ...] = ()


class ToolFactory:
    """Builds the tool of a definition."""

    def __init__(self, box: SecretBox, http_limits: HttpLimits) -> None:
        self._box = box
        self._http_limits = http_limits

    def build(self, definition: ToolDefinition, *, stored: bool = True) -> Built:
        """The runnable tool; a `SidecarError` when a stored value cannot be decrypted."""
        match definition:
            case HttpToolDefinition():
                return self._http(definition, stored=stored)
            case FunctionToolDefinition():
                return Built(FunctionTool(definition.function, description=definition.description))
            case CodeToolDefinition():
                tool = CodeTool(
                    name=definition.key,
                    description=definition.description,
                    spec=definition.code_tool,
                    max_response_bytes=self._http_limits.max_response_bytes,
                )
                return Built(tool)

    def _http(self, definition: HttpToolDefinition, *, stored: bool) -> Built:
        spec, held = self.reveal_headers(definition.http, stored=stored)
        tool = HttpTool(
            name=definition.key,
            description=definition.description,
            spec=spec,
            max_response_bytes=self._http_limits.max_response_bytes,
            max_redirects=self._http_limits.max_redirects,
        )
        return Built(tool, held)

    def reveal_headers(
        self, spec: HttpSpec, *, stored: bool = True
    ) -> tuple[HttpSpec, tuple[str, ...]]:
        """The spec with encrypted header values decrypted, and those values."""
        headers: dict[str, str | HeaderValue] = {}
        held: list[str] = []
        for name, value in spec.blueprint.headers.items():
            if isinstance(value, HeaderValue) and value.encrypted:
                plain = self._reveal(name, value.value, stored=stored)
                held.append(plain)
                value = HeaderValue(value=plain, encrypted=True)
            headers[name] = value
        blueprint = HttpBlueprint.model_construct(**{**dict(spec.blueprint), "headers": headers})
        return spec.model_copy(update={"blueprint": blueprint}), tuple(held)

    def seal_headers(self, spec: HttpSpec, previous: HttpSpec | None = None) -> HttpSpec:
        """The spec with `encrypted` header values encrypted for storage.

        A value of `***` (what the API shows for an encrypted value) keeps the
        stored ciphertext of the same header, so a read-modify-write round trip works,
        but only while the URL keeps its scheme and host: a stored secret is never
        redirected to a new destination without being sent again.
        """
        same_origin = previous is not None and _origin(previous.blueprint.url) == _origin(
            spec.blueprint.url
        )
        old = {
            name.lower(): value
            for name, value in (previous.blueprint.headers if previous else {}).items()
        }
        headers: dict[str, str | HeaderValue] = {}
        for name, value in spec.blueprint.headers.items():
            if isinstance(value, HeaderValue) and value.encrypted:
                kept = old.get(name.lower()) if same_origin else None
                value = self._sealed(name, value.value, kept, moved=not same_origin)
            headers[name] = value
        blueprint = HttpBlueprint.model_construct(**{**dict(spec.blueprint), "headers": headers})
        return spec.model_copy(update={"blueprint": blueprint})

    def _sealed(
        self, name: str, value: str, kept: str | HeaderValue | None, *, moved: bool
    ) -> HeaderValue:
        if value == MASKED:
            if isinstance(kept, HeaderValue) and kept.encrypted:
                return kept
            reason = (
                "the URL's scheme or host changed, so the stored value must be sent again"
                if moved
                else "this tool has no stored value for that header; send the real value"
            )
            raise BadRequest(
                f"header {name!r}: '***' stands for a stored encrypted value: {reason}",
                param=f"http.blueprint.headers.{name}",
            )
        if SecretBox.is_encrypted(value):
            try:
                self._box.decrypt(value)
            except DecryptionError:
                raise BadRequest(
                    f"header {name!r}: the value looks encrypted but the configured key "
                    "cannot decrypt it",
                    param=f"http.blueprint.headers.{name}",
                ) from None
            return HeaderValue(value=value, encrypted=True)
        return HeaderValue(value=self._box.encrypt(value), encrypted=True)

    def _reveal(self, header: str, value: str, *, stored: bool) -> str:
        if not SecretBox.is_encrypted(value):
            return value
        if not stored:
            # Only the registry's own stored values are decrypted: an inline tool could
            # otherwise have any ciphertext decrypted and sent wherever it points.
            raise BadRequest(
                f"header {header!r}: an inline tool cannot carry an encrypted stored value",
                param=f"http.blueprint.headers.{header}",
            )
        try:
            return self._box.decrypt(value)
        except DecryptionError:
            raise SidecarError(
                f"the stored value of header {header!r} cannot be decrypted with the "
                "configured SIDECAR_ENCRYPTION_KEY",
                code="decryption_failed",
            ) from None


def _origin(url_template: str) -> str:
    """The scheme and authority part of a URL template, as written (placeholders included)."""
    scheme, separator, rest = url_template.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return f"{scheme.lower()}{separator}{authority.lower()}"
