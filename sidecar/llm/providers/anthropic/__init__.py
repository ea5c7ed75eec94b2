"""Anthropic Messages (`POST /v1/messages`): Claude on Anthropic's API, and the servers
that speak its wire.

To the wire: the instructions and every system or developer message joined into the
top-level `system`; user and assistant messages as content blocks (`text`, `image` with
a `base64` source for `data:` URLs and a `url` source otherwise); a model's tool calls
as assistant `tool_use` blocks (the arguments parsed: `input` is an object); tool
outputs as `tool_result` blocks of a user message; Anthropic's own reasoning (a summary
with its signature) as a `thinking` block, other providers' reasoning dropped. Roles
must alternate, so consecutive messages of one role are joined into one (a turn's
thinking first, then its text and tool calls; a user message's tool results first, then
its text). Call ids outside `[A-Za-z0-9_-]` are rewritten the same way on the call and
its result. `max_tokens` is always sent; tools as `{name, description, input_schema}`
(`strict` is not sent: the wire rejects fields it does not know); `required` is `any`
and a named tool `tool`; `parallel_tool_calls: false` is `disable_parallel_tool_use`;
`stop` is `stop_sequences`; a temperature above 1 (OpenAI's scale reaches 2) is sent as 1.

From the wire: `text` blocks as text, `tool_use` blocks as tool calls (the content
block's index is the call's index; the input as JSON text, `{}` when empty), `thinking`
blocks as reasoning with the signature as its opaque part (`redacted_thinking` is not
kept); the stream's `message_start` (input usage), `content_block_*` (`text_delta`,
`input_json_delta`, `thinking_delta`, `signature_delta`), `message_delta` (stop reason,
output usage), `message_stop` (the turn is over), `ping` ignored, `error` a
`ProviderError` (`overloaded_error` is 529, retryable). A stream that ends before
`message_stop` is a `ProviderError`. Input usage counts cache reads and writes too.

Where the formats disagree:

- Reasoning effort is a thinking budget: `minimal` 1,024 tokens (the least Anthropic
  takes), `low` 2,048, `medium` 8,192, `high` 16,384; `none` turns thinking off; any
  other effort is a `ProviderError`. Anthropic counts thinking in `max_tokens`, so
  without `max_output_tokens` the budget is added to the default (the answer keeps its
  room); with it, the budget is at most half of it, and thinking is off when that half
  is under 1,024. Thinking takes neither a temperature (dropped) nor a `top_p` under
  0.95 (dropped), and is off when tool use is forced (Anthropic refuses both at once)
  or when the conversation's last assistant turn called tools without a thinking block
  (as after a fallback from another provider: Anthropic refuses to think then).
- A JSON schema becomes a tool named as the schema, whose input is the answer (the
  classic wire has no `response_format`; a forced tool's input is checked against its
  schema, which keeps answers in shape where a prompt alone would not, and a fallback
  from another provider keeps working). Tool use is forced: that tool when the request
  has no tools or its tool choice is `none`, any tool otherwise (or the named one). Its
  input comes back as the turn's text, and a turn that only answered finishes as
  `stop`. A request tool with the schema's name is a `ProviderError`.
"""

from sidecar.llm.providers.anthropic.adapter import AnthropicMessages

__all__ = ["AnthropicMessages"]
