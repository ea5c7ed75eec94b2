"""The HTTP doors: thin handlers and the wire models (pydantic) of the public contract.

`calls` (`/v1/tools/*`), `registry_routes` (`/v2/tools`), `health` (`/healthz`,
`/readyz`, `/metrics`), `middleware` (auth, body size, request ids, access log),
`models`, `wire` and `openapi`. Tool calls go through the one `Executor`.
"""
