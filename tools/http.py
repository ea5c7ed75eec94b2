"""HTTP tools (`type: "http"`): a request blueprint with `{{name}}` placeholders.

Values come from the model's arguments (`send_to_model` ones only), then each
argument's `default_value`, then the request variables (secrets included). A
secret only travels to the host written in the blueprint (or given by a
variable): a request whose host the model chose and that carries a secret is
refused, and a redirect to another origin is not followed when a secret is in
the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

import anyio
import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    field_validator,
    model_validator,
)

from tools.base import (
    Binding,
    FunctionDefinition,
    InvalidArguments,
    JsonObject,
    Secret,
    SecretEgressDenied,
    SecretMask,
    TimeLimit,
    ToolContext,
    ToolResult,
    UpstreamError,
    UpstreamTimeout,
    WholeNumber,
)
from tools.base import JsonValue as ToolJson
from tools.http_response import failure_kind, read_result

__all__ = ["HeaderValue", "HttpArgument", "HttpBlueprint", "HttpSpec", "HttpTool"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ARGUMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JSON_TYPES = {"string": "string", "number": "number", "boolean": "boolean"}


class HeaderValue(BaseModel):
    """A header value; `encrypted` ones are stored encrypted and count as secrets."""

    model_config = ConfigDict(extra="forbid")

    value: str
    encrypted: StrictBool = False


class HttpBlueprint(BaseModel):
    """The request an HTTP tool sends, with `{{name}}` placeholders."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1)
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH"] = "GET"
    headers: dict[str, str | HeaderValue] = {}
    body: JsonValue | None = None
    timeout: WholeNumber = Field(default=60, ge=1, le=600)

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str | HeaderValue]) -> dict[str, str | HeaderValue]:
        for name in value:
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"invalid header name {name!r} (must be an RFC 7230 token)")
        return value


class HttpArgument(BaseModel):
    """One argument of an HTTP tool."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "number", "boolean"]
    description: str = ""
    send_to_model: StrictBool = True
    default_value: str | float | int | bool | None = None

    @model_validator(mode="after")
    def _default_matches_type(self) -> HttpArgument:
        value = self.default_value
        if value is None:
            return self
        ok = {
            "string": isinstance(value, str),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
        }[self.type]
        if not ok:
            raise ValueError(f"default_value {value!r} is not a {self.type}")
        return self


class HttpSpec(BaseModel):
    """The `http` section of an HTTP tool."""

    model_config = ConfigDict(extra="forbid")

    blueprint: HttpBlueprint
    arguments: dict[str, HttpArgument] = {}

    @field_validator("arguments")
    @classmethod
    def _argument_names(cls, value: dict[str, HttpArgument]) -> dict[str, HttpArgument]:
        for name in value:
            if not _ARGUMENT_NAME.fullmatch(name):
                raise ValueError(f"invalid argument name {name!r}")
        return value


@dataclass(frozen=True)
class _Prepared:
    """A rendered request and the facts egress decisions need."""

    request: httpx.Request
    carries_secret: bool
    secrets: tuple[str, ...]  # the sensitive strings in it, kept out of error messages


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


class HttpTool:
    """A tool that sends one templated HTTP request and returns the response."""

    def __init__(
        self,
        *,
        name: str,
        description: str,
        spec: HttpSpec,
        max_response_bytes: int = 1_048_576,
        max_redirects: int = 5,
    ) -> None:
        self.spec = spec
        self.max_response_bytes = max_response_bytes
        self.max_redirects = max_redirects
        self._definition = FunctionDefinition(name, description, self._schema(spec))

    @staticmethod
    def _schema(spec: HttpSpec) -> JsonObject:
        visible = {n: a for n, a in spec.arguments.items() if a.send_to_model}
        properties: dict[str, ToolJson] = {
            n: {"type": _JSON_TYPES[a.type], "description": a.description}
            for n, a in visible.items()
        }
        required: list[ToolJson] = [n for n, a in visible.items() if a.default_value is None]
        return {"type": "object", "properties": properties, "required": required}

    @property
    def definition(self) -> FunctionDefinition:
        """The model-facing definition built from the `send_to_model` arguments."""
        return self._definition

    async def run(self, arguments: JsonObject, ctx: ToolContext) -> ToolResult:
        """Render the blueprint, send it and return status, safe headers and body."""
        limit = TimeLimit.of(float(self.spec.blueprint.timeout), ctx.deadline)
        prepared = self._prepare(ctx, self._bindings(arguments, ctx.variables), limit.seconds)
        host = _where(prepared.request.url, prepared.secrets)
        if limit.seconds <= 0:
            raise TimeoutError
        try:
            with anyio.fail_after(limit.seconds):
                return ToolResult(await self._exchange(ctx, prepared))
        except (httpx.TimeoutException, TimeoutError):
            timeout = UpstreamTimeout(f"{host} did not answer within {limit.seconds:g} s")
            raise limit.expired(timeout) from None
        except httpx.RequestError as exc:
            reason = _describe(exc, ctx.mask, prepared.secrets)
            raise UpstreamError(f"request to {host} failed: {reason}") from None

    def _bindings(
        self, arguments: JsonObject, variables: Mapping[str, ToolJson | Secret]
    ) -> dict[str, Binding]:
        bindings = {name: Binding(value) for name, value in variables.items()}
        for name, argument in self.spec.arguments.items():
            if argument.default_value is not None:
                bindings[name] = Binding(argument.default_value)
            value = arguments.get(name)
            if argument.send_to_model and value is not None:
                bindings[name] = Binding(value, from_model=True)
        return bindings

    def _prepare(
        self, ctx: ToolContext, bindings: Mapping[str, Binding], timeout: float
    ) -> _Prepared:
        blueprint = self.spec.blueprint
        url = ctx.renderer.url(blueprint.url, bindings)
        headers, headers_secret, secrets = self._headers(ctx, bindings)
        secrets += tuple(b.value.reveal() for b in bindings.values() if isinstance(b.value, Secret))
        carries_secret = url.used_secret or headers_secret
        content: bytes | None = None
        if blueprint.body is not None:
            body = ctx.renderer.json(cast(ToolJson, blueprint.body), bindings)
            carries_secret = carries_secret or body.used_secret
            content = json.dumps(body.value, ensure_ascii=False).encode()
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
        if url.host_from_model and carries_secret:
            raise SecretEgressDenied(
                "refused to send a secret to a host chosen by the model: the URL's host "
                "comes from a model argument; write the host in the tool's URL or pass it "
                "as a request variable"
            )
        try:
            request = ctx.http.build_request(
                blueprint.method, url.url, headers=headers, content=content, timeout=timeout
            )
        except httpx.InvalidURL:
            raise InvalidArguments("the rendered URL is not a valid URL") from None
        except UnicodeEncodeError:
            raise InvalidArguments("a header value holds characters HTTP cannot carry") from None
        return _Prepared(request, carries_secret, secrets)

    def _headers(
        self, ctx: ToolContext, bindings: Mapping[str, Binding]
    ) -> tuple[dict[str, str], bool, tuple[str, ...]]:
        """The rendered headers, whether one carries a secret, and the encrypted values."""
        headers: dict[str, str] = {}
        carries_secret = False
        encrypted: list[str] = []
        for name, template in self.spec.blueprint.headers.items():
            text = template.value if isinstance(template, HeaderValue) else template
            try:
                rendered = ctx.renderer.header(text, bindings)
            except InvalidArguments as exc:
                raise InvalidArguments(f"header {name!r}: {exc.message}", param=exc.param) from None
            headers[name] = str(rendered.value)
            if isinstance(template, HeaderValue) and template.encrypted:
                encrypted.append(headers[name])
            carries_secret = carries_secret or rendered.used_secret
        return headers, carries_secret or bool(encrypted), tuple(encrypted)

    async def _exchange(self, ctx: ToolContext, prepared: _Prepared) -> JsonObject:
        request, origin, hops = prepared.request, _origin(prepared.request.url), 0
        while True:
            response = await _send(ctx.http, request)
            try:
                nxt = response.next_request
                if (
                    nxt is None
                    or hops >= self.max_redirects
                    # A secret must not travel to another origin.
                    or (prepared.carries_secret and _origin(nxt.url) != origin)
                ):
                    return await read_result(response, self.max_response_bytes, ctx.mask)
            finally:
                await response.aclose()
            request, hops = nxt, hops + 1


async def _send(http: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """Send; an idempotent request whose connection closed before any answer goes once
    more. That is a kept-alive connection the upstream closed just as it was reused
    (its idle timeout): the upstream never answered, so sending again is safe, and the
    call does not fail for the pool's timing."""
    try:
        return await http.send(request, stream=True, follow_redirects=False)
    except httpx.RemoteProtocolError:
        if request.method not in IDEMPOTENT_METHODS:
            raise
        return await http.send(request, stream=True, follow_redirects=False)


def _where(url: httpx.URL, secrets: tuple[str, ...]) -> str:
    """The host (and port) to name in an error, never a secret."""
    where = url.host + (f":{url.port}" if url.port else "")
    return "the upstream host" if any(s and s in where for s in secrets) else f"host {where!r}"


def _describe(exc: httpx.RequestError, mask: SecretMask, secrets: tuple[str, ...]) -> str:
    kind = failure_kind(exc)
    detail = str(exc)
    # A detail that quotes a secret, a query or credentials is left out altogether.
    quotes_secret = mask.finds(detail) or any(s and s in detail for s in secrets)
    if not detail or quotes_secret or "?" in detail or "@" in detail:
        return kind
    return f"{kind} ({mask.cut(detail, 200, marker='...')})"
