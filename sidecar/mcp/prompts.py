"""The agents as MCP prompts: `agent/<key>`, each with the agent's description.

A prompt is what a user picks in a client (a slash command in many). Getting
`agent/<key>` with an `input` gives one user message that asks the client's model to
hand the input to that agent through the tool `respond`: the agent then runs here,
with its own model, instructions and tools.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    GetPromptRequestParams,
    GetPromptResult,
    ListPromptsResult,
    PaginatedRequestParams,
    Prompt,
    PromptArgument,
    PromptMessage,
    TextContent,
)

from sidecar.registry.agent_definitions import StoredAgent
from sidecar.registry.agents import Agents

__all__ = ["PROMPT_PREFIX", "AgentPrompts"]

PROMPT_PREFIX = "agent/"


class AgentPrompts:
    """The `prompts/list` and `prompts/get` handlers of the face."""

    def __init__(self, agents: Agents) -> None:
        self._agents = agents

    async def list_prompts(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListPromptsResult:
        if params is not None and params.cursor is not None:
            raise MCPError(INVALID_PARAMS, "unknown cursor: the prompt list has one page")
        return ListPromptsResult(prompts=[_prompt(agent) for agent in await self._agents.all()])

    async def get_prompt(
        self, ctx: ServerRequestContext[Any], params: GetPromptRequestParams
    ) -> GetPromptResult:
        key = params.name.removeprefix(PROMPT_PREFIX)
        agent = await self._agents.find(key) if params.name.startswith(PROMPT_PREFIX) else None
        if agent is None or agent.definition.key != key:
            raise MCPError(
                INVALID_PARAMS, f"no prompt named {params.name!r}; prompts/list names them"
            )
        text = (params.arguments or {}).get("input", "").strip()
        if not text:
            raise MCPError(INVALID_PARAMS, "the prompt needs its 'input' argument")
        definition = agent.definition
        message = (
            f"Use the tool respond with agent {definition.key!r} to answer the following, "
            f"and show me its answer:\n\n{text}"
        )
        return GetPromptResult(
            description=_description(agent),
            messages=[PromptMessage(role="user", content=TextContent(text=message))],
        )


def _prompt(agent: StoredAgent) -> Prompt:
    return Prompt(
        name=f"{PROMPT_PREFIX}{agent.definition.key}",
        title=agent.definition.display_name,
        description=_description(agent),
        arguments=[
            PromptArgument(name="input", description="What to ask the agent", required=True)
        ],
    )


def _description(agent: StoredAgent) -> str:
    definition = agent.definition
    return definition.description or definition.role or f"The agent {definition.key}"
