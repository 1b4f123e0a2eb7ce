// A small stdio MCP server for the tool-list-change test, on the official
// TypeScript SDK that server-everything installs. `grow` registers a new
// tool `late` (the SDK then sends notifications/tools/list_changed).
// Usage: node dynamic.mjs SDK_DIR   (SDK_DIR: node_modules/@modelcontextprotocol/sdk)
import path from "node:path";
import { pathToFileURL } from "node:url";

const sdk = process.argv[2];
const { McpServer } = await import(pathToFileURL(path.join(sdk, "dist/esm/server/mcp.js")).href);
const { StdioServerTransport } = await import(pathToFileURL(path.join(sdk, "dist/esm/server/stdio.js")).href);
const { z } = await import(pathToFileURL(path.join(sdk, "../../zod/index.js")).href).catch(
  () => import(pathToFileURL(path.join(sdk, "../../zod/lib/index.mjs")).href),
);

const server = new McpServer({ name: "dynamic", version: "1.0.0" });
server.registerTool("grow", { description: "Adds the tool `late`", inputSchema: {} }, async () => {
  server.registerTool("late", { description: "A tool added at run time", inputSchema: { n: z.number() } }, async ({ n }) => ({
    content: [{ type: "text", text: `late ${n * 2}` }],
  }));
  return { content: [{ type: "text", text: "grown" }] };
});
await server.connect(new StdioServerTransport());
