"""Turns tool definitions into runnable tools, revealing stored secrets at the last moment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sidecar.errors import BadRequest, SidecarError
from sidecar.registry.crypto import DecryptionError, SecretBox
from sidecar.registry.definitions import (
    MASKED,
    CodeToolDefinition,
    FunctionToolDefinition,
    HttpToolDefinition,
    JsonSchemaToolDefinition,
    McpToolDefinition,
    ToolDefinition,
)
from tools.base import McpServer, McpToolInfo, Renderer, Tool, VariableValue
from tools.code import CodeTool
from tools.function import FunctionTool
from tools.http import HeaderValue, HttpBlueprint, HttpSpec, HttpTool
from tools.mcp import (
    AllowedTools,
    InlineMcpTool,
    McpSpec,
    McpTool,
    McpToolEntry,
    entry_of,
    render_server,
)

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
            case JsonSchemaToolDefinition():
                answer = definition.json_schema.as_function()
                return Built(FunctionTool(answer, description=definition.description))
            case CodeToolDefinition():
                tool = CodeTool(
                    name=definition.key,
                    description=definition.description,
                    spec=definition.code_tool,
                    max_response_bytes=self._http_limits.max_response_bytes,
                )
                return Built(tool)
            case McpToolDefinition():
                raise BadRequest(
                    f"{definition.key!r} is an MCP server: name one of its tools with 'tool_id'",
                    param="tool.tool_id",
                )

    def build_inline_mcp(self, spec: McpSpec, name: str, allowed: AllowedTools | None) -> Built:
        """A tool of an MCP server given with the call, by name (its values are never decrypted)."""
        revealed, held = self.reveal_mcp(spec, stored=False)
        max_bytes = self._http_limits.max_response_bytes
        return Built(InlineMcpTool(revealed, name, allowed, max_bytes=max_bytes), held)

    def mcp_server(
        self, spec: McpSpec, renderer: Renderer, variables: Mapping[str, VariableValue]
    ) -> McpServer:
        """Where a (revealed) MCP server spec points, its placeholders filled."""
        return render_server(spec, renderer, variables)

    def mcp_entry(self, info: McpToolInfo, ident: str) -> McpToolEntry:
        """The stored form of a tool a server listed."""
        return entry_of(info, ident)

    def build_mcp(
        self, definition: McpToolDefinition, entry: McpToolEntry, *, stored: bool = True
    ) -> Built:
        """One tool of an MCP server."""
        spec, held = self.reveal_mcp(definition.mcp, stored=stored)
        return Built(McpTool(spec, entry, max_bytes=self._http_limits.max_response_bytes), held)

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
        headers, held = self._revealed(
            spec.blueprint.headers, stored=stored, where="http.blueprint"
        )
        blueprint = HttpBlueprint.model_construct(**{**dict(spec.blueprint), "headers": headers})
        return spec.model_copy(update={"blueprint": blueprint}), held

    def reveal_mcp(self, spec: McpSpec, *, stored: bool = True) -> tuple[McpSpec, tuple[str, ...]]:
        """An MCP server spec with its encrypted header values decrypted, and those values."""
        headers, held = self._revealed(spec.headers, stored=stored, where="mcp")
        return spec.model_copy(update={"headers": headers}), held

    def _revealed(
        self, headers: Mapping[str, str | HeaderValue], *, stored: bool, where: str
    ) -> tuple[dict[str, str | HeaderValue], tuple[str, ...]]:
        revealed: dict[str, str | HeaderValue] = {}
        held: list[str] = []
        for name, value in headers.items():
            if isinstance(value, HeaderValue) and value.encrypted:
                plain = self._reveal(name, value.value, stored=stored, where=where)
                held.append(plain)
                value = HeaderValue(value=plain, encrypted=True)
            revealed[name] = value
        return revealed, tuple(held)

    def seal_headers(self, spec: HttpSpec, previous: HttpSpec | None = None) -> HttpSpec:
        """The spec with `encrypted` header values encrypted for storage.

        A value of `***` (what the API shows for an encrypted value) keeps the
        stored ciphertext of the same header, so a read-modify-write round trip works,
        but only while the URL keeps its scheme and host: a stored secret is never
        redirected to a new destination without being sent again.
        """
        headers = self._sealed_all(
            spec.blueprint.headers,
            previous.blueprint.headers if previous else None,
            same_origin=previous is not None
            and _origin(previous.blueprint.url) == _origin(spec.blueprint.url),
            where="http.blueprint",
        )
        blueprint = HttpBlueprint.model_construct(**{**dict(spec.blueprint), "headers": headers})
        return spec.model_copy(update={"blueprint": blueprint})

    def seal_mcp(self, spec: McpSpec, previous: McpSpec | None = None) -> McpSpec:
        """`seal_headers` for an MCP server's headers (the server URL plays the blueprint's)."""
        headers = self._sealed_all(
            spec.headers,
            previous.headers if previous else None,
            same_origin=previous is not None
            and _origin(previous.server_url or "") == _origin(spec.server_url or ""),
            where="mcp",
        )
        return spec.model_copy(update={"headers": headers})

    def _sealed_all(
        self,
        headers: Mapping[str, str | HeaderValue],
        previous: Mapping[str, str | HeaderValue] | None,
        *,
        same_origin: bool,
        where: str,
    ) -> dict[str, str | HeaderValue]:
        old = {name.lower(): value for name, value in (previous or {}).items()}
        sealed: dict[str, str | HeaderValue] = {}
        for name, value in headers.items():
            if isinstance(value, HeaderValue) and value.encrypted:
                kept = old.get(name.lower()) if same_origin else None
                value = self._sealed(name, value.value, kept, moved=not same_origin, where=where)
            sealed[name] = value
        return sealed

    def _sealed(
        self, name: str, value: str, kept: str | HeaderValue | None, *, moved: bool, where: str
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
                param=f"{where}.headers.{name}",
            )
        if SecretBox.is_encrypted(value):
            try:
                self._box.decrypt(value)
            except DecryptionError:
                raise BadRequest(
                    f"header {name!r}: the value looks encrypted but the configured key "
                    "cannot decrypt it",
                    param=f"{where}.headers.{name}",
                ) from None
            return HeaderValue(value=value, encrypted=True)
        return HeaderValue(value=self._box.encrypt(value), encrypted=True)

    def _reveal(self, header: str, value: str, *, stored: bool, where: str) -> str:
        if not SecretBox.is_encrypted(value):
            return value
        if not stored:
            # Only the registry's own stored values are decrypted: an inline tool could
            # otherwise have any ciphertext decrypted and sent wherever it points.
            raise BadRequest(
                f"header {header!r}: an inline tool cannot carry an encrypted stored value",
                param=f"{where}.headers.{header}",
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
