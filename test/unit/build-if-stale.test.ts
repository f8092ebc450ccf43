import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
// @ts-expect-error: a plain .mjs script without types
import { isCurrent, stamp } from "../../scripts/build-if-stale.mjs";

/** A tree shaped like the repository's, small: what the build reads, and a built snippet/dist. */
let root: string;
const write = (path: string, text: string) => {
  mkdirSync(join(root, path, ".."), { recursive: true });
  writeFileSync(join(root, path), text);
};
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "relay-build-"));
  for (const path of [
    "snippet/src/core.ts",
    "snippet/rollup.config.mjs",
    "shared/activities.ts",
    "scripts/relay-types.mjs",
    "relay.config.ts",
    "package-lock.json",
  ])
    write(path, `// ${path}`);
  for (const out of ["relay.js", "relay.mjs", "relay-asset.ts", "relay.d.ts"]) write(`snippet/dist/${out}`, "built");
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe("wrangler's [build] step (scripts/build-if-stale.mjs)", () => {
  it("skips the build when snippet/dist was built from exactly the current sources", () => {
    stamp(root);
    expect(isCurrent(root)).toBe(true);
  });

  it("builds on a fresh clone (no record of a build)", () => {
    expect(isCurrent(root)).toBe(false);
  });

  it.each(["snippet/src/core.ts", "shared/activities.ts", "relay.config.ts", "package-lock.json", "scripts/relay-types.mjs"])(
    "builds again after %s changed (a git pull), even with its old mtime",
    (path) => {
      stamp(root);
      write(path, "// changed");
      expect(isCurrent(root)).toBe(false);
    },
  );

  it("builds again when an output is missing, and ignores changes to the outputs themselves", () => {
    stamp(root);
    write("snippet/dist/relay.js", "edited by hand");
    expect(isCurrent(root)).toBe(true);
    rmSync(join(root, "snippet/dist/relay-asset.ts"));
    expect(isCurrent(root)).toBe(false);
  });
});
