// A third-party MCP client (the official TypeScript SDK) driven by the tests.
//
// Usage: node mcp_client.mjs '<plan as JSON>'
//   plan: {"server": {"stdio": {"command", "args", "env", "cwd"}} | {"http": {"url", "headers"}},
//          "calls": [{"tool": "current_date", "arguments": {...},
//                     "progress"?: true, "abort_on_stdin"?: true}, ...],
//          "prompts"?: {"get": "<name>", "arguments": {...}},
//          "elicit"?: {"action": "accept", "content": {...}}}
// Prints one JSON document on stdout: the server's name and version, the tools/list
// answer and the answer of each call, in order (with the progress notifications heard
// when asked, and `{"aborted": true}` for a call aborted once a line came on stdin; it
// stays connected until a second line comes),
// the prompts when asked, and the elicitation questions it answered. Any other failure
// exits non-zero with the error on stderr. The SDK speaks the 2025 protocol revisions
// (initialize handshake).
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

function transportFor(server) {
  if (server.stdio) {
    return new StdioClientTransport({ ...server.stdio, stderr: "inherit" });
  }
  const { url, headers } = server.http;
  return new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
}

let stdinLines = null;

async function nextStdinLine() {
  stdinLines ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  await stdinLines.next();
}

async function callTool(client, call) {
  const progress = [];
  const controller = new AbortController();
  const options = { signal: controller.signal };
  if (call.progress) {
    options.onprogress = (note) => progress.push(note);
  }
  const pending = client.callTool(
    { name: call.tool, arguments: call.arguments ?? {} },
    undefined,
    options,
  );
  if (call.abort_on_stdin) {
    await nextStdinLine();
    controller.abort("the test cancels the call");
    let outcome;
    try {
      await pending;
      outcome = { aborted: false };
    } catch (error) {
      outcome = { aborted: true, error: String(error) };
    }
    // The cancellation is sent in the background: stay connected until the test has
    // seen its effect and says so with another line.
    await nextStdinLine();
    return outcome;
  }
  const answer = await pending;
  return call.progress ? { ...answer, progress } : answer;
}

const plan = JSON.parse(process.argv[2]);
const capabilities = plan.elicit ? { elicitation: {} } : {};
const client = new Client({ name: "sidecar-tests", version: "1.0.0" }, { capabilities });
const asked = [];
if (plan.elicit) {
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    asked.push(request.params.message);
    return plan.elicit;
  });
}
const transport = transportFor(plan.server);
await client.connect(transport);
try {
  const listed = await client.listTools();
  const calls = [];
  for (const call of plan.calls ?? []) {
    calls.push(await callTool(client, call));
  }
  const answer = { server: client.getServerVersion(), tools: listed.tools, calls, asked };
  if (plan.prompts) {
    answer.prompts = (await client.listPrompts()).prompts;
    answer.prompt = await client.getPrompt({
      name: plan.prompts.get,
      arguments: plan.prompts.arguments,
    });
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await client.close();
  process.exit(process.exitCode ?? 0); // a reader of stdin would keep the process alive
}
