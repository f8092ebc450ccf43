#!/usr/bin/env node
/**
 * `npm run setup -- --env production [--secrets-file secrets.json] [--dead-letter-retention 1209600]`:
 * creates what a first deploy of that environment needs, as wrangler.toml declares it, and prints
 * what it did. Idempotent: it lists what exists first and changes only what is missing, so running
 * it twice changes nothing.
 *
 * - the environment's queues (every producer's, every consumer's and its dead-letter queue), the
 *   dead-letter queue kept as long as Queues allow (14 days on the Paid plan) so that dead letters
 *   can be replayed after a long weekend;
 * - its secrets: ORTTO_API_KEY and each catalogue site's key (required), IDENTITY_SECRET
 *   (production: signed identities) and SERVER_TOKEN (backends, npm run smoke), taken from
 *   `--secrets-file` (JSON or KEY=value lines) or the environment, uploaded in one
 *   `wrangler secret bulk` from a file only this user can read. A secret that exists is left as
 *   it is (rotate with `wrangler secret put`). Values never appear in arguments or output.
 *
 * It runs the `wrangler` on PATH (`npm run` puts the project's first).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadTs, root } from "./load-ts.mjs";

const { values } = parseArgs({
  options: {
    env: { type: "string" },
    "secrets-file": { type: "string" },
    "dead-letter-retention": { type: "string", default: "1209600" },
  },
});
const env = values.env;
if (!env) {
  // The top level is local development and the tests: run by mistake, this would create its queues
  // and a placeholder Worker holding the key in the account.
  console.error("usage: npm run setup -- --env <staging|production> [--secrets-file file]: name the environment to set up");
  process.exit(2);
}
// Loaded once the arguments are known: wrangler takes a second or two to load.
const { unstable_readConfig } = await import("wrangler");
const config = unstable_readConfig({ config: join(root, "wrangler.toml"), env }, { hideWarnings: true });
const envArgs = env ? ["--env", env] : [];

/** Runs wrangler; returns its output, or throws with what it printed. */
function wrangler(args, { allowFailure = false } = {}) {
  const run = spawnSync("wrangler", args, { cwd: root, encoding: "utf8", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } });
  if (run.error) throw new Error(`could not run wrangler: ${run.error.message}`);
  if (run.status !== 0 && !allowFailure) throw new Error(`wrangler ${args[0]} ${args[1]} failed:\n${run.stdout}${run.stderr}`);
  return { ok: run.status === 0, output: `${run.stdout}${run.stderr}`, stdout: run.stdout };
}

const done = [];
const report = (what, outcome) => done.push([what, outcome]);

// Queues: every name the environment's bindings use, the dead-letter queue last.
const deadLetterQueues = new Set(config.queues.consumers?.map((c) => c.dead_letter_queue).filter(Boolean));
const wanted = [
  ...new Set([
    ...(config.queues.producers ?? []).map((p) => p.queue),
    ...(config.queues.consumers ?? []).map((c) => c.queue),
    ...deadLetterQueues,
  ]),
];

/** Every queue of the account: `wrangler queues list`, page by page, names read from its table. */
function existingQueues() {
  const names = new Set();
  for (let page = 1; page <= 50; page++) {
    const before = names.size;
    const { output } = wrangler(["queues", "list", "--page", String(page)]);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the table's colours, when wrangler prints them
    const plain = output.replace(/\x1b\[[0-9;]*m/g, "");
    for (const line of plain.split("\n")) for (const cell of line.split("│")) if (cell.trim()) names.add(cell.trim());
    if (names.size === before) break;
  }
  return names;
}

const queues = existingQueues();
for (const name of wanted) {
  if (queues.has(name)) {
    report(`queue ${name}`, "exists");
    continue;
  }
  const retention = deadLetterQueues.has(name) ? ["--message-retention-period-secs", values["dead-letter-retention"]] : [];
  wrangler(["queues", "create", name, ...retention]);
  report(`queue ${name}`, deadLetterQueues.has(name) ? `created (messages kept ${values["dead-letter-retention"]} s)` : "created");
}

// Secrets.
const { default: catalogue } = await loadTs("relay.config.ts");
const required = ["ORTTO_API_KEY", ...new Set((catalogue.sites ?? []).map((s) => s.keySecret))];
const optional = {
  IDENTITY_SECRET: "not given: open mode (docs/deploy.md: production wants signed identities)",
  SERVER_TOKEN: "not given (optional: backends and npm run smoke need one)",
};

/** The values on offer: --secrets-file (JSON, or KEY=value lines) or the environment. */
function offered() {
  const file = values["secrets-file"];
  if (!file) return process.env;
  const text = readFileSync(file, "utf8");
  if (text.trim().startsWith("{")) {
    try {
      return JSON.parse(text);
    } catch {
      // Not JSON.parse's error: it (and Node's report of it) quotes the file's text, secrets and all.
      console.error(`--secrets-file ${file} is not valid JSON (its text is not shown: it holds secrets); nothing was set`);
      process.exit(1);
    }
  }
  return Object.fromEntries(
    text
      .split("\n")
      .map((line) => /^\s*([A-Z0-9_]+)\s*=\s*(.*?)\s*$/.exec(line))
      .filter(Boolean)
      .map(([, k, v]) => [k, v.replace(/^(["'])(.*)\1$/, "$2")]),
  );
}

// Before the first deploy the Worker does not exist: it has no secrets yet.
const listed = wrangler(["secret", "list", ...envArgs, "--format", "json"], { allowFailure: true });
// Only wrangler's own words for that (any other failure, "Route not found" included, stops the run:
// taken for "no secrets yet", it would overwrite every secret given).
const notDeployed = /Worker "[^"]+"(?: \(env: [^)]*\))? not found\./;
if (!listed.ok && !notDeployed.test(listed.output)) throw new Error(`wrangler secret list failed:\n${listed.output}`);
// The JSON is on stdout; warnings (with their own brackets) go to stderr.
const existing = new Set(listed.ok ? JSON.parse(listed.stdout.slice(listed.stdout.indexOf("["))).map((s) => s.name) : []);

const given = offered();
const upload = {};
let missing = 0;
for (const name of [...required, ...Object.keys(optional)]) {
  const value = typeof given[name] === "string" ? given[name].trim() : "";
  if (existing.has(name)) report(`secret ${name}`, "exists, unchanged");
  else if (value) upload[name] = value;
  else if (required.includes(name)) {
    missing++;
    report(`secret ${name}`, "MISSING: give it in the environment or --secrets-file");
  } else report(`secret ${name}`, optional[name]);
}
if (Object.keys(upload).length) {
  const dir = mkdtempSync(join(tmpdir(), "relay-setup-"));
  const file = join(dir, "secrets.json");
  try {
    writeFileSync(file, JSON.stringify(upload), { mode: 0o600 });
    // One call; before the first deploy it creates the Worker as a placeholder that the deploy replaces.
    wrangler(["secret", "bulk", file, ...envArgs]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  for (const name of Object.keys(upload)) report(`secret ${name}`, "set");
}

const width = Math.max(...done.map(([what]) => what.length));
console.log(`setup of ${config.name}${env ? ` (--env ${env})` : ""}\n`);
for (const [what, outcome] of done) console.log(`  ${what.padEnd(width)}  ${outcome}`);
console.log(
  missing
    ? `\n${missing} required secret${missing > 1 ? "s are" : " is"} missing; run again once given.`
    : `\nready: npm run deploy${env ? ` -- --env ${env}` : ""}`,
);
process.exit(missing ? 1 : 0);
