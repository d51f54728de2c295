// Validate an AsyncAPI document with the official parser (@asyncapi/parser, the one the AsyncAPI CLI uses).
// Usage: node asyncapi-validate.mjs [FILE]   (no FILE: read stdin)   Prints one JSON line per
// diagnostic: {severity, code, message, path}; exit 1 if any is an error.
import { readFileSync } from "node:fs";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const SEVERITIES = {
  [DiagnosticSeverity.Error]: "error",
  [DiagnosticSeverity.Warning]: "warning",
  [DiagnosticSeverity.Information]: "information",
  [DiagnosticSeverity.Hint]: "hint",
};

const source = process.argv[2];
const text = readFileSync(source ?? 0, "utf8");
// parse() runs the same validation as validate(), then builds the document model (parsing every
// schema too), so a document that validates but cannot be used is reported as well.
const { document, diagnostics } = await new Parser().parse(text, { source });
const found = diagnostics.map((diagnostic) => ({
  severity: SEVERITIES[diagnostic.severity] ?? String(diagnostic.severity),
  code: diagnostic.code,
  message: diagnostic.message,
  // A JSON pointer (RFC 6901) into the document, as the keys hold dots but may hold "/" too.
  path: "#" + diagnostic.path.map((key) => "/" + String(key).replaceAll("~", "~0").replaceAll("/", "~1")).join(""),
}));
if (document === undefined && !found.some((diagnostic) => diagnostic.severity === "error")) {
  found.push({ severity: "error", code: "no-document", message: "the parser returned no document", path: "#" });
}
for (const diagnostic of found) console.log(JSON.stringify(diagnostic));
process.exit(found.some((diagnostic) => diagnostic.severity === "error") ? 1 : 0);
