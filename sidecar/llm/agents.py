"""Running an agent (`model: "agent/<key>"`, RESPONSES.md §7): its settings under the request's.

The agent gives the model, its parameters and retries, the fallbacks, the instructions
(rendered by its `engine`), default variables, the limits of `settings` and the tools.
The request's `input`, `variables` (over the defaults), `limits` (field by field) and
extra `tools` (after the agent's) apply on top, as do its sampling fields and any
`instructions` it adds (after the agent's). A fallback model's own parameters apply to
that fallback only; a value the request sets wins over them.

Tool entries carry the agent's per-tool options (`requires_approval` after the
agent's `tool_approval_required` policy, `configuration`, `timeout`), which the
responder reads off every entry, the request's own included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.llm.responses import Limits, ReasoningOptions, ResponseRequest, RetryOptions
from sidecar.llm.routing import RetryPolicy
from sidecar.registry.agent_definitions import (
    PLATFORM_TOOL_TYPES,
    AgentDefinition,
    AgentSettings,
    AgentTool,
    ModelConfig,
    ModelParameters,
)

__all__ = ["AGENT_PREFIX", "AgentRequest", "agent_key", "with_agent"]

AGENT_PREFIX = "agent/"


@dataclass(frozen=True)
class AgentRequest:
    """The request as the agent completes it, and the agent's fallbacks (with their own
    parameters as model-request overrides, and retries)."""

    request: ResponseRequest
    fallbacks: tuple[tuple[str, tuple[tuple[str, Any], ...], RetryPolicy | None], ...]


def agent_key(model: str) -> str | None:
    """The key in `agent/<key>`, or None for any other model."""
    return model.removeprefix(AGENT_PREFIX) if model.startswith(AGENT_PREFIX) else None


def with_agent(request: ResponseRequest, agent: AgentDefinition) -> AgentRequest:
    """The request an agent run makes: the agent's settings, the request's on top."""
    given = request.model_fields_set
    primary = agent.model
    parameters = primary.parameters or ModelParameters()
    limits = Limits(
        max_iterations=agent.settings.max_iterations,
        max_execution_time=float(agent.settings.max_execution_time),
        max_cost=agent.settings.max_cost,
    )
    if "limits" in given:
        limits = limits.model_copy(
            update={name: getattr(request.limits, name) for name in request.limits.model_fields_set}
        )
    instructions = "\n\n".join(text for text in (agent.instructions, request.instructions) if text)
    variables = {**agent.variables, **(request.variables or {})}
    effort = parameters.reasoning_effort
    update: dict[str, Any] = {
        "model": primary.id,
        "instructions": instructions or None,
        "template_engine": request.template_engine if "template_engine" in given else agent.engine,
        "variables": variables or None,
        "limits": limits,
        "tools": [*(_entry(tool, agent.settings) for tool in agent.settings.tools), *request.tools],
        "retry": request.retry or _retry_options(primary),
        "temperature": _first(request.temperature, parameters.temperature),
        "top_p": _first(request.top_p, parameters.top_p),
        "max_output_tokens": _first(request.max_output_tokens, parameters.output_tokens),
        "stop_sequences": _first(request.stop_sequences, parameters.stop),
        "reasoning": request.reasoning
        or (ReasoningOptions(effort=effort) if effort is not None else None),
    }
    completed = request.model_copy(update=update)
    if "fallbacks" in given:
        return AgentRequest(completed, ())
    fallbacks = tuple(
        (model.id, _overrides(model, given), _retry_policy(model)) for model in agent.fallbacks()
    )
    return AgentRequest(completed, fallbacks)


def _entry(tool: AgentTool, settings: AgentSettings) -> dict[str, Any]:
    """An agent's tool as a `tools[]` entry, with its options."""
    entry: dict[str, Any]
    if tool.type in PLATFORM_TOOL_TYPES:
        entry = {"type": f"orq:{tool.type}"}
    elif tool.type == "mcp":
        entry = {"type": "mcp", "key": tool.ident}
        if tool.tool_id:
            entry["tool_id"] = tool.tool_id
    else:
        entry = {"type": tool.type, "key": tool.ident}
    entry["requires_approval"] = settings.needs_approval(tool)
    if tool.configuration:
        entry["configuration"] = tool.configuration
    if tool.timeout is not None:
        entry["timeout"] = tool.timeout
    return entry


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _retry_options(model: ModelConfig) -> RetryOptions | None:
    if model.retry is None:
        return None
    return RetryOptions(count=model.retry.count, on_codes=model.retry.on_codes)


def _retry_policy(model: ModelConfig) -> RetryPolicy | None:
    if model.retry is None:
        return None
    return RetryPolicy(model.retry.count, frozenset(model.retry.on_codes))


# A fallback's parameters, by the model-request field each one sets.
_PARAMETER_FIELDS = (
    ("temperature", "temperature", "temperature"),
    ("top_p", "top_p", "top_p"),
    ("output_tokens", "max_output_tokens", "max_output_tokens"),
    ("reasoning_effort", "reasoning_effort", "reasoning"),
)


def _overrides(model: ModelConfig, given: set[str]) -> tuple[tuple[str, Any], ...]:
    """A fallback's own parameters, except those the request itself sets."""
    if model.parameters is None:
        return ()
    found: list[tuple[str, Any]] = []
    for attribute, field, request_field in _PARAMETER_FIELDS:
        value = getattr(model.parameters, attribute)
        if value is not None and request_field not in given:
            found.append((field, value))
    if model.parameters.stop is not None and "stop_sequences" not in given:
        found.append(("stop", tuple(model.parameters.stop)))
    return tuple(found)
