"""`instructions` rendered with the request's variables: `text`, `jinja` or `mustache`.

Every engine gets only the plain variables, so a secret never reaches a prompt: a
placeholder of a secret renders empty, like a missing one. `jinja` is jinja2's
immutable sandboxed environment (no attribute walks to the interpreter, no writes);
`mustache` is pystache without HTML escaping (a prompt is not HTML).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeAlias

import jinja2
import jinja2.sandbox
import pystache
from pystache.parser import ParsingError

from sidecar.errors import BadRequest
from sidecar.templating import render_prompt
from tools.base import JsonValue, Secret, VariableValue

__all__ = ["Engine", "render_instructions"]

Engine: TypeAlias = Literal["text", "jinja", "mustache"]

_JINJA = jinja2.sandbox.ImmutableSandboxedEnvironment(autoescape=False, undefined=jinja2.Undefined)
_MUSTACHE = pystache.Renderer(escape=lambda text: text, missing_tags="ignore")


def render_instructions(
    template: str, engine: Engine, variables: Mapping[str, VariableValue]
) -> str:
    """The instructions as the model reads them; `BadRequest` for a template that is wrong."""
    plain: dict[str, JsonValue] = {
        name: value for name, value in variables.items() if not isinstance(value, Secret)
    }
    match engine:
        case "text":
            return render_prompt(template, plain)
        case "jinja":
            try:
                return _JINJA.from_string(template).render(plain)
            except jinja2.TemplateError as exc:
                raise BadRequest(
                    f"instructions: the jinja template fails: {exc}", param="instructions"
                ) from None
        case "mustache":
            try:
                return str(_MUSTACHE.render(template, plain))
            except ParsingError as exc:
                raise BadRequest(
                    f"instructions: the mustache template fails: {exc}", param="instructions"
                ) from None
