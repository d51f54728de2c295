// Parse every ```mermaid block of a Markdown file with Mermaid's own parser (in jsdom, no browser).
// Usage: node mermaid-parse.mjs FILE.md   Prints a JSON array: one {diagram, type} or {diagram, error}
// per block; exit 1 if any block does not parse.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

const markdown = readFileSync(process.argv[2], "utf8");
const blocks = [...markdown.matchAll(/^```mermaid\n([\s\S]*?)^```$/gm)].map((match) => match[1]);
const results = [];
for (const [index, source] of blocks.entries()) {
  try {
    const { diagramType } = await mermaid.parse(source);
    results.push({ diagram: index, type: diagramType });
  } catch (error) {
    results.push({ diagram: index, error: String(error.message ?? error) });
  }
}
console.log(JSON.stringify(results, null, 2));
process.exit(results.some((result) => result.error) ? 1 : 0);
