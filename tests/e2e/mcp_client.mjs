// A third-party MCP client (the official TypeScript SDK) driven by the tests.
//
// Usage: node mcp_client.mjs '<plan as JSON>'
//   plan: {"server": {"stdio": {"command", "args", "env", "cwd"}} | {"http": {"url", "headers"}},
//          "calls": [{"tool": "current_date", "arguments": {...}}, ...]}
// Prints one JSON document on stdout: the server's name and version, the tools/list
// answer and the answer of each call, in order. Any failure exits non-zero with the
// error on stderr. The SDK speaks the 2025 protocol revisions (initialize handshake).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

function transportFor(server) {
  if (server.stdio) {
    return new StdioClientTransport({ ...server.stdio, stderr: "inherit" });
  }
  const { url, headers } = server.http;
  return new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
}

const plan = JSON.parse(process.argv[2]);
const client = new Client({ name: "sidecar-tests", version: "1.0.0" });
const transport = transportFor(plan.server);
await client.connect(transport);
try {
  const listed = await client.listTools();
  const calls = [];
  for (const call of plan.calls ?? []) {
    calls.push(await client.callTool({ name: call.tool, arguments: call.arguments ?? {} }));
  }
  const answer = { server: client.getServerVersion(), tools: listed.tools, calls };
  process.stdout.write(JSON.stringify(answer) + "\n");
} finally {
  await client.close();
}
