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

    def build(self, definition: ToolDefinition) -> Built:
        """The runnable tool; a `SidecarError` when a stored value cannot be decrypted."""
        match definition:
            case HttpToolDefinition():
                return self._http(definition)
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

    def _http(self, definition: HttpToolDefinition) -> Built:
        spec, held = self.reveal_headers(definition.http)
        tool = HttpTool(
            name=definition.key,
            description=definition.description,
            spec=spec,
            max_response_bytes=self._http_limits.max_response_bytes,
            max_redirects=self._http_limits.max_redirects,
        )
        return Built(tool, held)

    def reveal_headers(self, spec: HttpSpec) -> tuple[HttpSpec, tuple[str, ...]]:
        """The spec with encrypted header values decrypted, and those values."""
        headers: dict[str, str | HeaderValue] = {}
        held: list[str] = []
        for name, value in spec.blueprint.headers.items():
            if isinstance(value, HeaderValue) and value.encrypted:
                plain = self._reveal(name, value.value)
                held.append(plain)
                value = HeaderValue(value=plain, encrypted=True)
            headers[name] = value
        blueprint = HttpBlueprint.model_construct(**{**dict(spec.blueprint), "headers": headers})
        return spec.model_copy(update={"blueprint": blueprint}), tuple(held)

    def seal_headers(self, spec: HttpSpec, previous: HttpSpec | None = None) -> HttpSpec:
        """The spec with `encrypted` header values encrypted for storage.

        A value of `***` (what the API shows for an encrypted value) keeps the
        stored ciphertext of the same header, so a read-modify-write round trip works.
        """
        old = {
            name.lower(): value
            for name, value in (previous.blueprint.headers if previous else {}).items()
        }
        headers: dict[str, str | HeaderValue] = {}
        for name, value in spec.blueprint.headers.items():
            if isinstance(value, HeaderValue) and value.encrypted:
                value = self._sealed(name, value.value, old.get(name.lower()))
            headers[name] = value
        blueprint = HttpBlueprint.model_construct(**{**dict(spec.blueprint), "headers": headers})
        return spec.model_copy(update={"blueprint": blueprint})

    def _sealed(self, name: str, value: str, kept: str | HeaderValue | None) -> HeaderValue:
        if value == MASKED:
            if isinstance(kept, HeaderValue) and kept.encrypted:
                return kept
            raise BadRequest(
                f"header {name!r}: '***' stands for a stored encrypted value, and this tool "
                "has none for that header; send the real value",
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

    def _reveal(self, header: str, value: str) -> str:
        if not SecretBox.is_encrypted(value):
            return value
        try:
            return self._box.decrypt(value)
        except DecryptionError:
            raise SidecarError(
                f"the stored value of header {header!r} cannot be decrypted with the "
                "configured SIDECAR_ENCRYPTION_KEY",
                code="decryption_failed",
            ) from None
