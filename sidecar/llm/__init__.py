"""The model-routing core: orq's Responses API on top of the tool pipeline.

What it owns:
- `providers/`: one adapter per wire format (OpenAI Chat Completions, OpenAI
  Responses, Anthropic Messages) behind one narrow protocol, vendor facts inside;
- `routing`: retries and fallbacks over the adapters, until a turn's first event;
- `loop`: the agent loop, running tools only through the `Executor`;
- `responses` (the request's wire model), `response_object`, `items` and
  `wire_items` (the conversation, and items on the wire), `outputs` and `events`
  (output items and their SSE events), `templates`, `store` (stored responses);
  `agents` comes with the next issue;
- `responder`: THE response pipeline that the HTTP door and the MCP tool `respond`
  both call.

`llm.providers` never imports the loop, the registry or `execution`; the core takes
only `tools.base` from `tools`.
"""
