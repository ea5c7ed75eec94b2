"""Registered tool definitions: the orq `/v2/tools` shapes, shared by the API and manifests."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from ulid import ULID

from sidecar.errors import ManifestError
from tools.code import CodeSpec
from tools.function import FunctionSpec, JsonSchemaSpec
from tools.http import HeaderValue, HttpSpec
from tools.mcp import AllowedTools, McpSpec, McpToolEntry

__all__ = [
    "HANDED_BACK_KINDS",
    "KEY_PATTERN",
    "MASKED",
    "AllowedTools",
    "CodeToolDefinition",
    "FunctionToolDefinition",
    "HttpToolDefinition",
    "JsonSchemaToolDefinition",
    "McpSpec",
    "McpToolDefinition",
    "McpToolEntry",
    "StoredTool",
    "ToolDefinition",
    "definition_adapter",
    "field_path",
    "format_tool_id",
    "parse_definition",
    "parse_tool_id",
]

KEY_PATTERN = r"^[A-Za-z]([A-Za-z0-9]*([_-][A-Za-z0-9]+)*)?$"
ID_PREFIX = "tool_"
MASKED = "***"

ToolStatus: TypeAlias = Literal["live", "draft", "pending", "published"]


class ToolFields(BaseModel):
    """Fields every registered tool has."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=64, pattern=KEY_PATTERN)
    path: str = "Default"
    description: str = Field(default="", max_length=4096)
    display_name: str | None = None
    status: ToolStatus = "live"

    @model_validator(mode="after")
    def _display_name_defaults_to_key(self) -> Self:
        if self.display_name is None:
            self.display_name = self.key
        return self


class HttpToolDefinition(ToolFields):
    """A templated HTTP request (SPEC §2.4)."""

    type: Literal["http"]
    http: HttpSpec


class CodeToolDefinition(ToolFields):
    """Python code run in the sandbox (SPEC §2.5)."""

    type: Literal["code"]
    code_tool: CodeSpec


class FunctionToolDefinition(ToolFields):
    """A function the caller executes (SPEC §2.6)."""

    type: Literal["function"]
    function: FunctionSpec


class JsonSchemaToolDefinition(ToolFields):
    """A structured answer offered to the model as a function; handed back, never run."""

    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


class McpToolDefinition(ToolFields):
    """A remote MCP server and the tools it listed (SPEC §2.7)."""

    type: Literal["mcp"]
    mcp: McpSpec


ToolDefinition: TypeAlias = Annotated[
    HttpToolDefinition
    | CodeToolDefinition
    | FunctionToolDefinition
    | JsonSchemaToolDefinition
    | McpToolDefinition,
    Field(discriminator="type"),
]
definition_adapter: TypeAdapter[ToolDefinition] = TypeAdapter(ToolDefinition)
TOOL_KINDS = frozenset({"http", "code", "function", "json_schema", "mcp"})
# Kinds the caller answers: function tools, and `json_schema` tools whose call is the answer.
HANDED_BACK_KINDS = frozenset({"function", "json_schema"})


def field_path(loc: tuple[int | str, ...]) -> str:
    """A definition error's field path, without the union's tag (`http.blueprint.method`)."""
    parts = loc[1:] if len(loc) > 1 and loc[0] in TOOL_KINDS else loc
    return ".".join(str(part) for part in parts)


def parse_definition(body: object, *, where: str = "invalid tool definition") -> ToolDefinition:
    """A tool definition; `ManifestError`, led by `where`, names the fields that do not validate."""
    try:
        return definition_adapter.validate_python(body)
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(
            f"{field_path(error['loc']) or 'tool'}: {error['msg']}" for error in errors[:5]
        )
        first = field_path(errors[0]["loc"])
        raise ManifestError(f"{where}: {problems}", param=first or None) from None


class StoredTool(BaseModel):
    """A definition with the identity and history the registry gave it."""

    model_config = ConfigDict(frozen=True)

    id: str
    definition: ToolDefinition
    created: datetime
    updated: datetime
    version: int = 1
    source: Literal["api", "manifest"] = "api"

    @property
    def tool_id(self) -> str:
        """The public id, `tool_<ULID>`."""
        return format_tool_id(self.id)

    def version_hash(self) -> str:
        """A digest of the definition as it is shown, changing whenever that does.

        Taken over the masked form: a digest of an encrypted header's plaintext would
        let anyone test guesses of it.
        """
        body = json.dumps(self._shown_definition(), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def _shown_definition(self) -> dict[str, Any]:
        body = self.definition.model_dump(mode="json", exclude_none=True)
        if isinstance(self.definition, HttpToolDefinition):
            body["http"]["blueprint"]["headers"] = _masked(self.definition.http.blueprint.headers)
        if isinstance(self.definition, McpToolDefinition):
            body["mcp"]["headers"] = _masked(self.definition.mcp.headers)
        return body

    def to_wire(self) -> dict[str, Any]:
        """The orq-compatible JSON object of this tool (encrypted values masked)."""
        return {
            "_id": self.tool_id,
            **self._shown_definition(),
            "created": self.created.isoformat(),
            "updated": self.updated.isoformat(),
            "version": self.version,
            "version_hash": self.version_hash(),
            "source": self.source,
            "project_id": "default",
            "workspace_id": "default",
            "created_by_id": None,
            "updated_by_id": None,
        }


def _masked(headers: dict[str, str | HeaderValue]) -> dict[str, Any]:
    """Header values as shown to clients: an encrypted value (or its ciphertext) never is."""
    shown: dict[str, Any] = {}
    for name, value in headers.items():
        if isinstance(value, HeaderValue):
            text = MASKED if value.encrypted else value.value
            shown[name] = {"value": text, "encrypted": value.encrypted}
        else:
            shown[name] = value
    return shown


def format_tool_id(ulid: str) -> str:
    """`tool_<ULID>` for a bare ULID."""
    return f"{ID_PREFIX}{ulid}"


def parse_tool_id(text: str) -> str | None:
    """The bare ULID in `tool_<ULID>` or a bare ULID; None when `text` is neither."""
    candidate = text[len(ID_PREFIX) :] if text.startswith(ID_PREFIX) else text
    try:
        return str(ULID.from_str(candidate))
    except ValueError:
        return None
