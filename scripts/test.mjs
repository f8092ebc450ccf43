#!/usr/bin/env node
/**
 * The middle of `npm test`: the type check, Biome and the size budgets beside `vitest run`. Most
 * test files wait (on queue retries, Ortto's windows, a browser) rather than compute, so the
 * checks' CPU fits in beside them, at low priority, instead of coming first or last; none of them
 * measures time.
 * vitest prints as it goes; the checks' output follows it. Extra arguments go to vitest. Exits 1
 * if any fails.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const bin = (name) => fileURLToPath(new URL(`../node_modules/.bin/${name}`, import.meta.url));

/**
 * Runs a Node script; with `quiet`, its output is kept for the end, and the script runs at the
 * lowest CPU priority (`nice`): the checks take the CPU that vitest's files leave while they wait,
 * instead of slowing the start of its workerd files and browser stacks. Resolves to its exit code
 * and output.
 */
function run(name, args, quiet) {
  return new Promise((resolve) => {
    const [command, argv] =
      quiet && process.platform !== "win32" ? ["nice", ["-n", "19", process.execPath, ...args]] : [process.execPath, args];
    const child = spawn(command, argv, { stdio: quiet ? ["ignore", "pipe", "pipe"] : "inherit" });
    let output = "";
    child.stdout?.on("data", (d) => (output += d));
    child.stderr?.on("data", (d) => (output += d));
    child.on("close", (code) => resolve({ name, code, output }));
  });
}

const results = await Promise.all([
  run("typecheck", ["scripts/typecheck.mjs"], true),
  run("lint", [bin("biome"), "check", "."], true),
  // npm run size: the snippet's, then the worker bundle's.
  run("size", ["scripts/size.mjs"], true).then(async (snippet) => {
    if (snippet.code !== 0) return snippet;
    const worker = await run("size", ["scripts/worker-size.mjs"], true);
    return { ...worker, output: snippet.output + worker.output };
  }),
  run("vitest", [bin("vitest"), "run", ...process.argv.slice(2)], false),
]);
for (const { name, code, output } of results.filter((r) => r.output)) {
  process.stdout.write(`\n${name}${code === 0 ? "" : " FAILED"}:\n${output}`);
}
process.exit(results.some((r) => r.code !== 0) ? 1 : 0);
