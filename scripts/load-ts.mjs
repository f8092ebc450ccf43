/**
 * Loads the project's TypeScript (the catalogue, shared/, scripts/*.ts) into a Node script: Node 20
 * cannot strip types, so esbuild bundles the module first, as the bench and vitest's emulator do.
 */
import { mkdirSync, rmSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

export const root = fileURLToPath(new URL("..", import.meta.url));

/** Imports `path` (relative to the project root) after bundling it to .tmp/. */
export async function loadTs(path) {
  mkdirSync(`${root}.tmp`, { recursive: true });
  // One file per process: scripts that run at once (the tests of setup and smoke) must not read
  // each other's half-written bundle.
  const outfile = `${root}.tmp/${path.replace(/[/.]/g, "-")}-${process.pid}.mjs`;
  await build({ entryPoints: [`${root}${path}`], bundle: true, format: "esm", platform: "node", outfile, logLevel: "warning" });
  try {
    return await import(`${pathToFileURL(outfile).href}?${Date.now()}`);
  } finally {
    rmSync(outfile, { force: true });
  }
}
