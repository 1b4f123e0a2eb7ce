// A small stdio MCP server for the sandbox tests, on the official
// TypeScript SDK that server-everything installs. `fetch_url` tries an HTTP
// GET (5 s deadline) and says what happened, without ever failing the call.
// Usage: node fetcher.mjs SDK_DIR   (SDK_DIR: node_modules/@modelcontextprotocol/sdk)
import path from "node:path";
import { pathToFileURL } from "node:url";

const sdk = process.argv[2];
const { McpServer } = await import(pathToFileURL(path.join(sdk, "dist/esm/server/mcp.js")).href);
const { StdioServerTransport } = await import(pathToFileURL(path.join(sdk, "dist/esm/server/stdio.js")).href);
const { z } = await import(pathToFileURL(path.join(sdk, "../../zod/index.js")).href).catch(
  () => import(pathToFileURL(path.join(sdk, "../../zod/lib/index.mjs")).href),
);

const server = new McpServer({ name: "fetcher", version: "1.0.0" });
server.registerTool("fetch_url", { description: "GET a URL", inputSchema: { url: z.string() } }, async ({ url }) => {
  let text;
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
    text = `fetched: status ${r.status}, body ${await r.text()}`;
  } catch (e) {
    text = `fetch failed: ${e.cause?.code ?? ""} ${e.cause?.message ?? ""} ${e.message}`;
  }
  return { content: [{ type: "text", text }] };
});
await server.connect(new StdioServerTransport());
