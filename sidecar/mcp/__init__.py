"""The MCP face: the sidecar as an MCP server (stdio and Streamable HTTP).

`server` builds the server and its transports, `catalog` says what it lists (the
registry's tools, and later `respond`), `variables_file` reads the variables its
calls get. Tool calls go through the one `Executor`.
"""
