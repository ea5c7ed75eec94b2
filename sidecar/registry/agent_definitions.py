"""Agents: the orq `/v2/agents` shape, shared by the API and the manifests (RESPONSES.md §7).

An agent is a model with its instructions, fallbacks, limits and tools, run by a
request whose `model` is `agent/<key>`. Its tool entries name platform tools by type
(with a `configuration` merged over the model's arguments) and registered tools by
key or id; each may require approval before it runs.

Fields of orq's agents that the sidecar does not implement (knowledge bases, memory
stores, teams of agents...) are refused when they hold anything, never ignored.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from ulid import ULID

from sidecar.errors import ManifestError
from tools.base import Number, WholeNumber

__all__ = [
    "AGENT_KEY_PATTERN",
    "PLATFORM_TOOL_TYPES",
    "AgentDefinition",
    "AgentModel",
    "AgentSettings",
    "AgentTool",
    "ApprovalPolicy",
    "ModelConfig",
    "ModelParameters",
    "StoredAgent",
    "format_agent_id",
    "parse_agent",
    "parse_agent_id",
]

AGENT_KEY_PATTERN = r"^[A-Za-z][A-Za-z0-9]*([._-][A-Za-z0-9]+)*$"
ID_PREFIX = "agent_"
PLATFORM_TOOL_TYPES = frozenset({"current_date", "google_search", "web_scraper"})
REGISTERED_TOOL_TYPES = frozenset({"http", "code", "function", "json_schema", "mcp"})
# orq's agent fields the sidecar has no capability for: refused unless empty.
UNSUPPORTED_FIELDS = (
    "memory_stores",
    "knowledge_bases",
    "team_of_agents",
    "skills",
    "agent_plugins",
    "system_prompt",
)
UNSUPPORTED_SETTINGS = ("evaluators", "guardrails")
MAX_TOOL_TIMEOUT = 600.0

ApprovalPolicy: TypeAlias = Literal["all", "respect_tool", "none"]
Engine: TypeAlias = Literal["text", "jinja", "mustache"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelParameters(_Strict):
    """Model parameters an agent sets for its runs (a request's own values win)."""

    temperature: Number | None = Field(default=None, ge=0, le=2)
    top_p: Number | None = Field(default=None, ge=0, le=1)
    max_tokens: WholeNumber | None = Field(default=None, ge=1)
    max_completion_tokens: WholeNumber | None = Field(default=None, ge=1)
    max_output_tokens: WholeNumber | None = Field(default=None, ge=1)
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    stop: list[str] | None = None

    @property
    def output_tokens(self) -> int | None:
        """The output bound, whichever of its three names was used."""
        return self.max_output_tokens or self.max_completion_tokens or self.max_tokens


class ModelRetry(_Strict):
    """Retries of a model call (orq's SDK sends the numbers as floats)."""

    count: WholeNumber = Field(default=3, ge=1, le=5)
    on_codes: list[WholeNumber] = Field(default_factory=lambda: [429])


def _model_id(value: str) -> str:
    provider, _, model = value.partition("/")
    if not provider or not model:
        raise ValueError(
            f"a model is 'provider/model' (for example 'openai/gpt-4.1-mini'), got {value!r}"
        )
    if provider == "agent":
        raise ValueError("an agent's model cannot be another agent")
    return value


def _as_config(value: object) -> object:
    """A model given as a string is `{id}`."""
    return {"id": value} if isinstance(value, str) else value


def _as_configs(value: object) -> object:
    return [_as_config(entry) for entry in value] if isinstance(value, list) else value


class ModelConfig(_Strict):
    """A model with its parameters and retries: `{id, parameters, retry}` (or just its id)."""

    id: Annotated[str, AfterValidator(_model_id)]
    parameters: ModelParameters | None = None
    retry: ModelRetry | None = None
    fallback_models: Annotated[list[ModelConfig], BeforeValidator(_as_configs)] | None = None
    integration_id: None = None


AgentModel: TypeAlias = Annotated[ModelConfig, BeforeValidator(_as_config)]


class AgentTool(_Strict):
    """One tool of an agent: a platform tool by type, a registered tool by key or id."""

    type: str
    key: str | None = Field(default=None, min_length=1)
    id: str | None = Field(default=None, min_length=1)
    tool_id: str | None = Field(default=None, min_length=1)  # one tool of an MCP server
    requires_approval: StrictBool = False
    configuration: dict[str, Any] | None = None
    timeout: Number | None = Field(default=None, gt=0, le=MAX_TOOL_TIMEOUT)
    # Shown on the wire; accepted back so that a fetched agent can be sent again.
    action_type: str | None = None
    display_name: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _fits_its_type(self) -> Self:
        self.type = self.type.removeprefix("orq:")
        if self.type in PLATFORM_TOOL_TYPES:
            if self.key or self.tool_id:
                raise ValueError(f"a {self.type} tool is a platform tool: it takes no key")
            self.id = None
            return self
        if self.type not in REGISTERED_TOOL_TYPES:
            known = ", ".join(sorted(PLATFORM_TOOL_TYPES | REGISTERED_TOOL_TYPES))
            raise ValueError(f"unknown tool type {self.type!r} (known: {known})")
        if self.configuration is not None:
            raise ValueError("only platform tools take a configuration")
        if not self.key and not self.id:
            raise ValueError(f"a {self.type} tool names a registered tool by 'key' or 'id'")
        if self.tool_id and self.type != "mcp":
            raise ValueError("tool_id names one tool of an MCP server: only mcp tools take it")
        return self

    @property
    def ident(self) -> str:
        """The registered tool's key (stable across re-creation), else its id."""
        return self.key or self.id or self.type

    def to_wire(self) -> dict[str, Any]:
        """The entry as orq shows it: with an `id` and an `action_type`."""
        body = self.model_dump(mode="json", exclude_none=True)
        platform = self.type in PLATFORM_TOOL_TYPES
        body["id"] = self.id or (f"orq:{self.type}" if platform else self.ident)
        body["action_type"] = f"orq:{self.type}"
        return body


class AgentSettings(_Strict):
    """Limits and tools of an agent's runs."""

    max_iterations: WholeNumber = Field(default=100, ge=1, le=100)
    max_execution_time: WholeNumber = Field(default=600, ge=1, le=3600)
    max_cost: Number = Field(default=0.0, ge=0)
    tool_approval_required: ApprovalPolicy = "respect_tool"
    tools: list[AgentTool] = Field(default_factory=list)
    chat_exposed: StrictBool | None = None

    def needs_approval(self, tool: AgentTool) -> bool:
        """Whether a call of `tool` waits for the user's approval."""
        if self.tool_approval_required == "all":
            return True
        return self.tool_approval_required == "respect_tool" and tool.requires_approval


class AgentDefinition(_Strict):
    """An agent as it is registered."""

    key: str = Field(min_length=1, max_length=128, pattern=AGENT_KEY_PATTERN)
    display_name: str | None = None
    role: str = ""
    description: str = Field(default="", max_length=4096)
    instructions: str = ""
    path: str = "Default"
    model: AgentModel
    fallback_models: Annotated[list[ModelConfig], BeforeValidator(_as_configs)] = Field(
        default_factory=list
    )
    engine: Engine = "text"
    variables: dict[str, Any] = Field(default_factory=dict)
    settings: AgentSettings = Field(default_factory=AgentSettings)
    source: Literal["internal", "external", "experiment"] | None = None
    type: Literal["internal"] = "internal"

    @field_validator("variables")
    @classmethod
    def _no_secrets(cls, variables: dict[str, Any]) -> dict[str, Any]:
        for name, value in variables.items():
            if isinstance(value, dict) and "secret" in value:
                raise ValueError(
                    f"{name!r}: an agent keeps default values only; a secret is sent with "
                    "each request and never stored"
                )
        return variables

    @model_validator(mode="after")
    def _display_name_defaults_to_key(self) -> Self:
        if self.display_name is None:
            self.display_name = self.key
        return self

    def fallbacks(self) -> list[ModelConfig]:
        """The fallback models in order: those under `model` first, then the top-level ones."""
        return [*(self.model.fallback_models or []), *self.fallback_models]


def parse_agent(body: object, *, where: str = "invalid agent") -> AgentDefinition:
    """An agent definition; `ManifestError`, led by `where`, names what does not validate."""
    if not isinstance(body, dict):
        raise ManifestError(f"{where}: an agent must be a mapping", code="invalid_agent_definition")
    _refuse_unsupported(body, UNSUPPORTED_FIELDS, "", where)
    settings = body.get("settings")
    if isinstance(settings, dict):
        _refuse_unsupported(settings, UNSUPPORTED_SETTINGS, "settings.", where)
    try:
        return AgentDefinition.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = "; ".join(
            f"{_path(error['loc']) or 'agent'}: {_message(error)}" for error in errors[:5]
        )
        raise ManifestError(
            f"{where}: {problems}",
            param=_path(errors[0]["loc"]) or None,
            code="invalid_agent_definition",
        ) from None


def _refuse_unsupported(
    body: dict[str, Any], names: tuple[str, ...], prefix: str, where: str
) -> None:
    for name in names:
        value = body.pop(name, None)
        if value not in (None, [], {}, ""):
            raise ManifestError(
                f"{where}: {prefix}{name} is not supported by this service",
                param=f"{prefix}{name}",
                code="unsupported_parameter",
            )


def _path(loc: tuple[int | str, ...]) -> str:
    # Validators show up in the location (`model.function-before[...].id`): left out.
    return ".".join(str(part) for part in loc if not str(part).startswith("function-"))


def _message(error: Any) -> str:
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


class StoredAgent(BaseModel):
    """An agent with the identity and history the service gave it."""

    model_config = ConfigDict(frozen=True)

    id: str
    definition: AgentDefinition
    created: datetime
    updated: datetime
    version: int = 1
    source: Literal["api", "manifest"] = "api"

    @property
    def agent_id(self) -> str:
        """The public id, `agent_<ULID>`."""
        return format_agent_id(self.id)

    def to_wire(self) -> dict[str, Any]:
        """The orq-compatible JSON object of this agent."""
        definition = self.definition
        body = definition.model_dump(mode="json", exclude_none=True)
        model: dict[str, Any] = definition.model.model_dump(mode="json", exclude_none=True)
        model["fallback_models"] = [
            fallback.model_dump(mode="json", exclude_none=True)
            for fallback in definition.fallbacks()
        ]
        body["model"] = model
        body.pop("fallback_models", None)
        body["settings"]["tools"] = [tool.to_wire() for tool in definition.settings.tools]
        shown = {
            "_id": self.agent_id,
            **body,
            "status": "live",
            "source": definition.source or "internal",
            "project_id": "default",
            "workspace_id": "default",
            "created": self.created.isoformat(),
            "updated": self.updated.isoformat(),
            "version": str(self.version),
            "created_by_id": None,
            "updated_by_id": None,
        }
        shown["version_hash"] = hashlib.sha256(
            json.dumps(body, sort_keys=True).encode()
        ).hexdigest()[:16]
        return shown


def format_agent_id(ulid: str) -> str:
    """`agent_<ULID>` for a bare ULID."""
    return f"{ID_PREFIX}{ulid}"


def parse_agent_id(text: str) -> str | None:
    """The bare ULID in `agent_<ULID>` or a bare ULID; None when `text` is neither."""
    candidate = text[len(ID_PREFIX) :] if text.startswith(ID_PREFIX) else text
    try:
        return str(ULID.from_str(candidate))
    except ValueError:
        return None
