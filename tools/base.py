"""The tool contract: what every tool kind implements and what it receives.

Tools know only this module. The service builds a `ToolContext` per call and
hands it to `Tool.run`; a tool reports a failure the model should read by
raising `ToolError` (or a subclass) with a stable `code`.

    ToolError                      a failed call, shown to the model
    ├── InvalidArguments           arguments or templates that cannot be bound
    ├── OutboundBlocked            a destination the outbound guard refuses
    ├── SecretEgressDenied         a secret would leave for a host the model chose
    ├── UpstreamTimeout            the upstream did not answer in time
    ├── UpstreamError              the upstream could not be reached or broke
    ├── McpUnavailable             an MCP server could not be reached or its connection broke
    └── McpFailure                 an MCP server answered with a protocol error
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Protocol, TypeAlias, runtime_checkable

import httpx
from pydantic import BeforeValidator, Strict

__all__ = [
    "NO_SECRETS",
    "Binding",
    "CodeOutcome",
    "CodeRunner",
    "Deadline",
    "FunctionDefinition",
    "HandBack",
    "InvalidArguments",
    "JsonObject",
    "JsonValue",
    "McpCallResult",
    "McpConnector",
    "McpFailure",
    "McpServer",
    "McpToolInfo",
    "McpUnavailable",
    "Number",
    "OutboundBlocked",
    "OutboundCall",
    "Rendered",
    "RenderedUrl",
    "Renderer",
    "Secret",
    "SecretEgressDenied",
    "SecretMask",
    "TimeLimit",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolOutput",
    "ToolResult",
    "UpstreamError",
    "UpstreamTimeout",
    "VariableValue",
    "WholeNumber",
    "shorten",
]

JsonValue: TypeAlias = dict[str, "JsonValue"] | list["JsonValue"] | str | int | float | bool | None


def _whole(value: object) -> object:
    """A float with no fraction as the int it is (orq's SDK sends its numbers as `100.0`)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


# Numbers of the wire models, without lax coercion: a JSON number only, never `true` or
# `"5"`. A whole number also takes a whole float; a number also takes an int.
WholeNumber = Annotated[int, BeforeValidator(_whole), Strict()]
Number = Annotated[float, Strict()]
JsonObject: TypeAlias = dict[str, JsonValue]


class Secret:
    """A secret value; its repr and str never show it. Call `reveal()` at the last moment."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("secret", self._value))


VariableValue: TypeAlias = JsonValue | Secret


class ToolError(Exception):
    """A call that failed in a way the model (and the caller) should read."""

    code = "tool_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidArguments(ToolError):
    """The arguments (or the values a template needs) are missing or of the wrong kind."""

    code = "invalid_arguments"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class OutboundBlocked(ToolError):
    """The outbound guard refused a destination."""

    code = "outbound_blocked"

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"outbound connection to {host!r} refused: {reason}")
        self.host = host
        self.reason = reason


class SecretEgressDenied(ToolError):
    """A request carrying a secret would go to a host that is not pinned by the tool."""

    code = "secret_egress_denied"


class UpstreamTimeout(ToolError):
    """The upstream did not answer within the time allowed."""

    code = "upstream_timeout"


class UpstreamError(ToolError):
    """The upstream could not be reached, reset the connection or sent garbage."""

    code = "upstream_error"


class McpUnavailable(ToolError):
    """An MCP server could not be reached, or its connection broke during the call."""

    code = "mcp_unavailable"


class McpFailure(ToolError):
    """An MCP server answered with a protocol error (unknown tool, bad parameters...)."""

    code = "mcp_error"


@dataclass(frozen=True)
class FunctionDefinition:
    """What the model sees of a tool: a function name, a description and a JSON Schema."""

    name: str
    description: str
    parameters: JsonObject
    strict: bool | None = None


@dataclass(frozen=True)
class ToolResult:
    """A completed call's result (plain JSON)."""

    value: JsonValue


@dataclass(frozen=True)
class HandBack:
    """A call the caller must execute itself (function tools)."""

    name: str
    arguments: JsonObject


ToolOutput: TypeAlias = ToolResult | HandBack


@dataclass(frozen=True)
class Deadline:
    """A point on the monotonic clock by which a call must finish.

    The monotonic clock, not the event loop's: a deadline is made for every call,
    and `time.monotonic` is the cheapest reading that any loop agrees with.
    """

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())


@dataclass(frozen=True)
class TimeLimit:
    """How long a tool may wait: its own limit, or less when the call's deadline is sooner.

    The one rule for what a timeout means: when the call's deadline is sooner than the
    tool's own limit and runs out, the call ends as the pipeline's `tool_timeout`,
    whichever timer noticed first; only the tool's own limit ends as its kind's
    timeout (`upstream_timeout`, `sandbox_timeout`).
    """

    own: float
    seconds: float

    @classmethod
    def of(cls, own: float, deadline: Deadline) -> TimeLimit:
        """The tool's `own` limit within what is left of `deadline`."""
        return cls.within(own, deadline.remaining())

    @classmethod
    def within(cls, own: float, available: float) -> TimeLimit:
        """The tool's `own` limit within `available` seconds."""
        return cls(own, min(own, available))

    def expired(self, own_timeout: Exception) -> Exception:
        """What the timeout is: `TimeoutError` (the call's deadline) or `own_timeout`."""
        return TimeoutError() if self.seconds < self.own else own_timeout


@dataclass(frozen=True)
class Binding:
    """A value a placeholder may take, and whether the model chose it."""

    value: VariableValue
    from_model: bool = False


@dataclass(frozen=True)
class Rendered:
    """A rendered template and whether any secret went into it."""

    value: JsonValue
    used_secret: bool


@dataclass(frozen=True)
class RenderedUrl:
    """A rendered URL, whether it carries a secret, and whether the model chose its host."""

    url: str
    used_secret: bool
    host_from_model: bool


class Renderer(Protocol):
    """Fills `{{name}}` placeholders structurally (the service's one renderer)."""

    def url(self, template: str, bindings: Mapping[str, Binding]) -> RenderedUrl:
        """A URL with each value percent-encoded for the part it lands in."""
        ...

    def header(self, template: str, bindings: Mapping[str, Binding]) -> Rendered:
        """A header value; values with CR or LF are refused."""
        ...

    def json(self, template: JsonValue, bindings: Mapping[str, Binding]) -> Rendered:
        """A JSON document; a string that is one placeholder takes the value's JSON type."""
        ...


OutboundCall: TypeAlias = Callable[[JsonObject], Awaitable[JsonObject]]


@dataclass(frozen=True)
class CodeOutcome:
    """What running (or compiling) code in the sandbox gave: a result, or a failure kind."""

    result: JsonValue = None
    stdout: str = ""
    failure: str | None = None  # compile_error, runtime_error, timeout, memory_limit, ...
    message: str = ""
    message_cut: bool = False  # the message ends where the sandbox cut it


class CodeRunner(Protocol):
    """Runs Python tool code in the sandbox (the service's implementation wraps it)."""

    async def check(self, source: str) -> CodeOutcome:
        """Compile `source` in a confined child; a failure names the line."""
        ...

    async def run(
        self,
        source: str,
        names: dict[str, JsonValue],
        *,
        time_limit: float,
        http: OutboundCall | None,
    ) -> CodeOutcome:
        """Run `source` with `names` as top-level variables; `http` answers its requests."""
        ...


@dataclass(frozen=True, repr=False)
class McpServer:
    """An MCP server to reach, its placeholders filled: a URL (`http`, `sse`) or a command."""

    transport: str  # "http" (Streamable HTTP), "sse" (legacy HTTP+SSE) or "stdio"
    url: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    command: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        where = self.url or self.command
        return f"McpServer({self.transport}, {where!r}, headers=[...], env=[...])"


@dataclass(frozen=True)
class McpToolInfo:
    """A tool an MCP server lists."""

    name: str
    description: str
    input_schema: JsonObject
    read_only: bool = False


@dataclass(frozen=True)
class McpCallResult:
    """An MCP `tools/call` result: content blocks, structured content, the error flag."""

    content: list[JsonValue]
    structured_content: JsonValue = None
    is_error: bool = False


class McpConnector(Protocol):
    """Reaches MCP servers (the service pools the connections)."""

    async def list_tools(
        self, server: McpServer, *, time_limit: float, fresh: bool = True
    ) -> list[McpToolInfo]:
        """Every tool `server` lists; `fresh=False` accepts a listing the pool already has."""
        ...

    async def call_tool(
        self, server: McpServer, name: str, arguments: JsonObject, *, time_limit: float
    ) -> McpCallResult:
        """Call tool `name`; raise `McpUnavailable`, `McpFailure` or `UpstreamTimeout`."""
        ...


def shorten(text: str, limit: int, *, size: Callable[[str], int] = len, marker: str = "") -> str:
    """The longest start of `text` that fits `limit` by `size`, `marker` added when cut.

    `size` counts characters or bytes (never fewer than the characters). This is the
    cutting step of `SecretMask.cut`: text that may hold a secret is cut through a
    mask, which redacts the whole text first.
    """
    if size(text) <= limit:
        return text
    room = max(limit - size(marker), 0)
    if size is len:
        return text[:room] + marker
    low, high = 0, min(len(text), room)  # the longest start whose size fits
    while low < high:
        middle = (low + high + 1) // 2
        if size(text[:middle]) <= room:
            low = middle
        else:
            high = middle - 1
    return text[:low] + marker


class SecretMask(Protocol):
    """The call's secrets as a tool may use them: to find, mask and safely cut text."""

    def finds(self, text: str) -> bool:
        """Whether a secret (in one of its encodings) occurs in `text`."""
        ...

    def redact(self, text: str) -> str:
        """`text` with every secret masked."""
        ...

    def redact_truncated(self, text: str) -> str:
        """`text`, cut before the tool saw it whole, masked; a tail that may begin a secret too."""
        ...

    def cut(
        self, text: str, limit: int, *, size: Callable[[str], int] = len, marker: str = ""
    ) -> str:
        """`text` redacted whole, then cut to fit `limit` (measured by `size`)."""
        ...


class _NoSecrets:
    """The mask of a call that holds no secret: text passes, cuts are plain cuts."""

    def finds(self, text: str) -> bool:
        return False

    def redact(self, text: str) -> str:
        return text

    def redact_truncated(self, text: str) -> str:
        return text

    def cut(
        self, text: str, limit: int, *, size: Callable[[str], int] = len, marker: str = ""
    ) -> str:
        return shorten(text, limit, size=size, marker=marker)


NO_SECRETS: SecretMask = _NoSecrets()


@dataclass(frozen=True)
class ToolContext:
    """What a tool receives for one call."""

    call_id: str
    deadline: Deadline
    variables: Mapping[str, VariableValue]
    http: httpx.AsyncClient
    renderer: Renderer
    code: CodeRunner | None = None
    mcp: McpConnector | None = None
    mask: SecretMask = NO_SECRETS


@runtime_checkable
class Tool(Protocol):
    """One executable tool."""

    @property
    def definition(self) -> FunctionDefinition:
        """The model-facing definition; `parameters` is what arguments are validated against."""
        ...

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolOutput:
        """Run the call; raise `ToolError` for a failure the model should read."""
        ...
