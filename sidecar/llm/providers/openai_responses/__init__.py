"""OpenAI Responses (`POST /responses`): OpenAI, Azure OpenAI's v1 API, and the servers
that speak its wire.

To the wire: the instructions as `instructions`; messages as `message` input items
(`input_text` and `input_image` parts; the assistant's text as `output_text`, its images
dropped); a model's tool calls as `function_call` items and their outputs as
`function_call_output` items; OpenAI's own reasoning (a summary with its encrypted
content) as a `reasoning` item without an id, other providers' reasoning dropped. The
sidecar keeps the history, so `store` is always false, and the encrypted reasoning is
asked for (`include: ["reasoning.encrypted_content"]`) when the request sets a reasoning
effort or sends such reasoning back: models that do not reason refuse that include.
Tools as `{type: function, name, description, parameters, strict}` (`strict` false when
unset: this wire would make it true, and refuse most schemas); a named tool choice as
`{type: function, name}`; a JSON schema as `text.format`; a reasoning effort as
`reasoning: {effort, summary: auto}`. The wire has no stop sequences: a request with
some is a `ProviderError` (silently dropping them would change the answer).

From the wire: `message` output items as text (`output_text`, and `refusal` text),
`function_call` items as tool calls (indexed by their `output_index`, also found by
`item_id`), `reasoning` items as reasoning (the summary parts joined by a blank line;
the encrypted content as the opaque part). The stream: `response.output_text.delta`,
`response.refusal.delta`, `response.reasoning_summary_text.delta`,
`response.output_item.added` (a call's id and name), `response.function_call_arguments`
`.delta` (empty deltas skipped) and `.done` (the arguments, when no delta brought them),
`response.output_item.done` (the encrypted reasoning; what no delta brought), and the
terminal `response.completed` or `response.incomplete` (usage, finish: an incomplete
answer is `length`, or `content_filter`). `response.failed` and `error` events are a
`ProviderError`, and so is a stream that ends before its terminal event.
"""

from sidecar.llm.providers.openai_responses.adapter import OpenAIResponses

__all__ = ["OpenAIResponses"]
