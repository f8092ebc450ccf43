#!/usr/bin/env node
/**
 * wrangler.toml's [build] command: `npm run build` unless snippet/dist was built from exactly the
 * files it is built from now (a hash of their contents, which `npm run build` writes to
 * snippet/dist/.inputs). So a deploy after a `git pull` always ships the relay.js of the tree, while
 * `wrangler dev` under `npm start` or the e2e tests (which have just built) does not rewrite
 * snippet/dist under a running test.
 */
import { execSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const OUTPUTS = ["relay.js", "relay.mjs", "relay-asset.ts", "relay.d.ts"];
const stampOf = (root) => join(root, "snippet", "dist", ".inputs");

/** Everything the build reads: the snippet's sources and config, shared/, the catalogue, the build scripts, the locked toolchain. */
export function inputsHash(root) {
  const dist = join(root, "snippet", "dist");
  const files = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (path !== dist) walk(path);
      } else files.push(path);
    }
  };
  for (const dir of ["snippet", "shared", "scripts"]) walk(join(root, dir));
  files.push(join(root, "relay.config.ts"), join(root, "package-lock.json"));
  const hash = createHash("sha256");
  for (const file of files.sort()) hash.update(relative(root, file)).update("\0").update(readFileSync(file)).update("\0");
  return hash.digest("hex");
}

/** Records that snippet/dist was built from the current sources (the end of `npm run build`). */
export const stamp = (root) => writeFileSync(stampOf(root), inputsHash(root));

/** Was snippet/dist built, whole, from exactly the current sources? */
export function isCurrent(root) {
  const dist = join(root, "snippet", "dist");
  const recorded = existsSync(stampOf(root)) ? readFileSync(stampOf(root), "utf8") : "";
  return recorded === inputsHash(root) && OUTPUTS.every((f) => existsSync(join(dist, f)));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = fileURLToPath(new URL("..", import.meta.url));
  if (process.argv.includes("--stamp")) stamp(root);
  else if (isCurrent(root)) console.log("snippet/dist is current (built from these sources)");
  else execSync("npm run build", { cwd: root, stdio: "inherit" });
}
