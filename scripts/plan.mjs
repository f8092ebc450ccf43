#!/usr/bin/env node
/**
 * `npm run plan [-- push | diff | --json-schema]`: the tracking plan (relay.config.ts) printed, checked
 * against what Ortto will create, pushed to an account and compared with it (scripts/plan/cli.ts).
 */
import { createRequire } from "node:module";
import { join } from "node:path";
import { loadTs, root } from "./load-ts.mjs";

const [{ main }, { default: catalogue }] = await Promise.all([loadTs("scripts/plan/cli.ts"), loadTs("relay.config.ts")]);
const argv = process.argv.slice(2);
// wrangler.toml's vars (ORTTO_REGION, ORTTO_MAX_RPS) per environment, read as wrangler reads them, when needed.
const wranglerVars = (env) => {
  const { unstable_readConfig } = createRequire(import.meta.url)("wrangler");
  return unstable_readConfig({ config: join(root, "wrangler.toml"), env }, { hideWarnings: true }).vars ?? {};
};
process.exitCode = await main(argv, {
  root,
  catalogue,
  env: process.env,
  wranglerVars,
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
});
