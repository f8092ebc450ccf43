#!/usr/bin/env node
/**
 * `npm run typecheck`: the four TypeScript projects (tools and tests, the worker, the emulator, the
 * snippet's public types), checked side by side: they share no output, and one after another they
 * take most of a minute of `npm test`. Exits 1 if any fails, after all have printed.
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const projects = [".", "worker", "emulator", "test/types"];

const results = await Promise.all(
  projects.map(
    (project) =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [tsc, "--noEmit", "-p", project], { stdio: ["ignore", "pipe", "pipe"] });
        let output = "";
        child.stdout.on("data", (d) => (output += d));
        child.stderr.on("data", (d) => (output += d));
        child.on("close", (code) => resolve({ project, code, output }));
      }),
  ),
);
for (const { project, code, output } of results) if (code !== 0) process.stdout.write(`tsc -p ${project}:\n${output}\n`);
process.exit(results.some((r) => r.code !== 0) ? 1 : 0);
