"""The tool registry: platform, manifest and API-registered tools in one place.

`registry` looks tools up and manages the registered ones; `mcp_servers` is the part
that knows what registered MCP servers list (a class the registry holds);
`discovery` lists a server's tools; `definitions` and `references` are the wire
shapes of definitions and of `tools[]` entries; `factory` builds runnable tools;
`manifests` reads the YAML files; `store` keeps registered tools in SQLite;
`crypto` seals stored header values.
"""
