#!/usr/bin/env node
/**
 * wrangler.toml's [build] command: `npm run build` unless snippet/dist was built from exactly the
 * files it is built from now (a hash of their contents, which `npm run build` writes to
 * snippet/dist/.inputs). So a deploy
 * after a `git pull` always ships the relay.js of the tree, while `wrangler dev` under `npm start` or
 * the e2e tests (which have just built) does not rewrite snippet/dist under a running test.
 */
import { execSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const dist = join(root, "snippet", "dist");
const stamp = join(dist, ".inputs");
const OUTPUTS = ["relay.js", "relay.mjs", "relay-asset.ts", "relay.d.ts"];

/** Everything the build reads: the snippet's sources and config, shared/, the catalogue, the build scripts, the locked toolchain. */
function inputsHash() {
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

// `npm run build` ends here: it records what it built from.
if (process.argv.includes("--stamp")) {
  writeFileSync(stamp, inputsHash());
  process.exit(0);
}
const before = inputsHash();
const fresh = existsSync(stamp) && readFileSync(stamp, "utf8") === before && OUTPUTS.every((f) => existsSync(join(dist, f)));
if (fresh) {
  console.log("snippet/dist is current (built from these sources)");
} else {
  execSync("npm run build", { cwd: root, stdio: "inherit" });
}
