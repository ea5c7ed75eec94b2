"""The model-routing core (being built): orq's Responses API on top of the tool pipeline.

What it will own:
- `providers/`: one adapter per wire format (OpenAI Chat Completions, OpenAI
  Responses, Anthropic Messages) behind one narrow protocol, vendor facts inside;
- `routing`: retries and fallbacks, itself an adapter made of adapters;
- `loop`: the agent loop, running tools only through the `Executor`;
- `responses` (the wire models shared by the HTTP door and MCP), `events` (SSE),
  `store` (stored responses), `agents`;
- `responder`: THE response pipeline that the HTTP door and the MCP tool `respond`
  both call.

`llm.providers` never imports the loop, the registry or `execution`; the core takes
only `tools.base` from `tools`.
"""
