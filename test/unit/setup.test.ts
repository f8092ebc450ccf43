import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it, type TestContext } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));

/**
 * A stand-in `wrangler` first on PATH: records every call's arguments, keeps the account's queues
 * and each Worker's secrets in a JSON file, and answers as wrangler 4 does (the queue table, the
 * secret list's JSON, "not found" for a Worker never deployed).
 */
const STAND_IN = `#!/usr/bin/env node
const fs = require("node:fs");
const dir = __dirname;
const state = JSON.parse(fs.readFileSync(dir + "/state.json", "utf8"));
const args = process.argv.slice(2);
fs.appendFileSync(dir + "/calls.jsonl", JSON.stringify(args) + "\\n");
const env = args.includes("--env") ? args[args.indexOf("--env") + 1] : "";
const save = () => fs.writeFileSync(dir + "/state.json", JSON.stringify(state));
const [group, command] = args;
if (group === "queues" && command === "list") {
  const page = Number(args[args.indexOf("--page") + 1] || 1);
  const rows = page === 1 ? state.queues : [];
  console.log("┌────┬──────┐\\n│ id │ name │\\n├────┼──────┤");
  for (const [i, q] of rows.entries()) console.log("│ " + i + " │ " + q + " │");
  console.log("└────┴──────┘");
} else if (group === "queues" && command === "create") {
  state.queues.push(args[2]); save();
  console.log("Created queue " + args[2]);
} else if (group === "secret" && command === "list") {
  if (state.listError) { console.error(state.listError); process.exit(1); }
  if (!state.secrets[env]) { console.error('Worker "x" not found.\\nIf this is a new Worker, run \`wrangler deploy\` first to create it.'); process.exit(1); }
  console.log(JSON.stringify(Object.keys(state.secrets[env]).map((name) => ({ name, type: "secret_text" }))));
  if (state.warn) console.error("▲ [WARNING] " + state.warn);
} else if (group === "secret" && command === "bulk") {
  state.secrets[env] = { ...state.secrets[env], ...JSON.parse(fs.readFileSync(args[2], "utf8")) }; save();
  console.log("Finished processing secrets file");
} else { console.error("stand-in: unexpected " + args.join(" ")); process.exit(3); }
`;

/**
 * Each run of setup.mjs is mostly CPU (Node loading wrangler): four at a time, so that the tests
 * running at once do not starve each other (and the files beside them) on a two-core machine.
 */
let running = 0;
const waiting: (() => void)[] = [];
async function fourAtOnce<T>(run: () => Promise<T>): Promise<T> {
  while (running >= 4) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await run();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** A directory of its own for one test: the stand-in, its state and its calls. */
function standIn(onTestFinished: TestContext["onTestFinished"]) {
  const dir = mkdtempSync(join(tmpdir(), "relay-setup-test-"));
  writeFileSync(join(dir, "wrangler"), STAND_IN);
  chmodSync(join(dir, "wrangler"), 0o755);
  writeFileSync(join(dir, "state.json"), JSON.stringify({ queues: ["someone-elses-queue"], secrets: {} }));
  writeFileSync(join(dir, "calls.jsonl"), "");
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));

  const calls = () =>
    readFileSync(join(dir, "calls.jsonl"), "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as string[]);
  const state = () =>
    JSON.parse(readFileSync(join(dir, "state.json"), "utf8")) as { queues: string[]; secrets: Record<string, Record<string, string>> };

  async function setup(args: string[], env: Record<string, string | undefined> = {}) {
    const clean = { ...process.env, ORTTO_API_KEY: undefined, IDENTITY_SECRET: undefined, SERVER_TOKEN: undefined };
    try {
      const { stdout, stderr } = await fourAtOnce(() =>
        promisify(execFile)(process.execPath, [join(root, "scripts", "setup.mjs"), ...args], {
          cwd: root,
          env: { ...clean, ...env, PATH: `${dir}${delimiter}${process.env.PATH}` },
        }),
      );
      return { code: 0, output: stdout + stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, output: e.stdout + e.stderr };
    }
  }
  /** The account as a first run of `--env production` with SECRETS leaves it (set up without running it again). */
  const afterFirstRun = (extra: Record<string, unknown>) =>
    writeFileSync(
      join(dir, "state.json"),
      JSON.stringify({
        queues: ["someone-elses-queue", "ortto-relay-production-delivery", "ortto-relay-production-dead-letters"],
        secrets: { production: SECRETS },
        ...extra,
      }),
    );
  return { dir, calls, state, setup, afterFirstRun };
}

const SECRETS = {
  ORTTO_API_KEY: "key-4e1f-never-printed",
  IDENTITY_SECRET: "identity-77aa-never-printed",
  SERVER_TOKEN: "token-19bd-never-printed",
};

// Each run starts Node, loads wrangler and bundles the catalogue: seconds on a busy machine. The
// tests wait on those processes, each in a directory of its own, so they run at once, four runs
// at a time (fourAtOnce): a test's timeout covers its turn in that line, 11 runs in all (one of them stops before loading wrangler).
describe.concurrent("npm run setup -- --env production", { timeout: 180_000 }, () => {
  it("lists the queues first, creates the environment's queues and dead-letter queue, sets its secrets, and says so", async ({
    onTestFinished,
  }) => {
    const { calls, state, setup } = standIn(onTestFinished);
    const { code, output } = await setup(["--env", "production"], SECRETS);
    expect(code).toBe(0);
    expect(calls()[0]).toEqual(["queues", "list", "--page", "1"]);
    expect(calls().filter((c) => c[1] === "create")).toEqual([
      ["queues", "create", "ortto-relay-production-delivery"],
      ["queues", "create", "ortto-relay-production-dead-letters", "--message-retention-period-secs", "1209600"],
    ]);
    expect(state().queues).toEqual(["someone-elses-queue", "ortto-relay-production-delivery", "ortto-relay-production-dead-letters"]);
    expect(state().secrets.production).toEqual(SECRETS);
    expect(output).toMatch(/queue ortto-relay-production-delivery +created/);
    expect(output).toMatch(/secret ORTTO_API_KEY +set/);
    expect(output).toContain("ready: npm run deploy -- --env production");
    // Values reach wrangler through a file only: never an argument, never the output.
    for (const value of Object.values(SECRETS)) {
      expect(output).not.toContain(value);
      expect(JSON.stringify(calls())).not.toContain(value);
    }
  });

  it("changes nothing when run twice: the second run only lists", async ({ onTestFinished }) => {
    const { calls, state, setup } = standIn(onTestFinished);
    await setup(["--env", "production"], SECRETS);
    const after = state();
    const first = calls().length;
    const { code, output } = await setup(["--env", "production"], { ...SECRETS, ORTTO_API_KEY: "another-key" });
    expect(code).toBe(0);
    expect(state()).toEqual(after);
    expect(
      calls()
        .slice(first)
        .map((c) => c.slice(0, 2)),
    ).toEqual([
      ["queues", "list"],
      ["queues", "list"],
      ["secret", "list"],
    ]);
    expect(output).toMatch(/queue ortto-relay-production-dead-letters +exists/);
    expect(output).toMatch(/secret ORTTO_API_KEY +exists, unchanged/);
  });

  it("reads the secret list from wrangler's JSON on stdout when wrangler also warns on stderr", async ({ onTestFinished }) => {
    const { setup, afterFirstRun } = standIn(onTestFinished);
    afterFirstRun({ warn: "Processing wrangler.toml configuration: [some warning]" });
    const { code, output } = await setup(["--env", "production"], SECRETS);
    expect(output).toMatch(/secret ORTTO_API_KEY +exists, unchanged/);
    expect(code).toBe(0);
  });

  it("stops, overwriting nothing, when listing the secrets fails for any reason but a Worker not yet deployed", async ({
    onTestFinished,
  }) => {
    const { calls, state, setup, afterFirstRun } = standIn(onTestFinished);
    afterFirstRun({
      listError:
        "✘ [ERROR] A request to the Cloudflare API (/accounts/x/workers/scripts/ortto-relay-production/secrets) failed.\n  Route not found [code: 7003]",
    });
    const before = calls().length;
    const { code, output } = await setup(["--env", "production"], { ...SECRETS, ORTTO_API_KEY: "a-new-key-never-sent" });
    expect(code).not.toBe(0);
    expect(output).toContain("wrangler secret list failed");
    expect(
      calls()
        .slice(before)
        .filter((c) => c[1] === "bulk"),
    ).toEqual([]);
    expect(state().secrets.production?.ORTTO_API_KEY).toBe(SECRETS.ORTTO_API_KEY);
  });

  it("refuses to run without --env, touching nothing: the top level is local development, not an account's Worker", async ({
    onTestFinished,
  }) => {
    const { calls, setup } = standIn(onTestFinished);
    const { code, output } = await setup([], SECRETS);
    expect(code).toBe(2);
    expect(output).toContain("--env");
    expect(calls()).toEqual([]);
  });

  it("creates staging's own queues, apart from production's", async ({ onTestFinished }) => {
    const { calls, state, setup } = standIn(onTestFinished);
    await setup(["--env", "staging"], SECRETS);
    expect(state().queues).toEqual(["someone-elses-queue", "ortto-relay-staging-delivery", "ortto-relay-staging-dead-letters"]);
    expect(
      calls()
        .filter((c) => c[0] === "secret")
        .every((c) => c.includes("staging")),
    ).toBe(true);
  });

  it("fails naming a missing required secret, after creating the queues, and takes secrets from --secrets-file", async ({
    onTestFinished,
  }) => {
    const { dir, state, setup } = standIn(onTestFinished);
    const missing = await setup(["--env", "production"]);
    expect(missing.code).toBe(1);
    expect(missing.output).toMatch(/secret ORTTO_API_KEY +MISSING/);
    expect(missing.output).toMatch(/secret IDENTITY_SECRET +not given: open mode/);
    expect(state().queues).toContain("ortto-relay-production-delivery");

    const file = join(dir, ".secrets.production");
    writeFileSync(file, `ORTTO_API_KEY="${SECRETS.ORTTO_API_KEY}"\nSERVER_TOKEN=${SECRETS.SERVER_TOKEN}\n`);
    const given = await setup(["--env", "production", "--secrets-file", file]);
    expect(given.code).toBe(0);
    expect(state().secrets.production).toEqual({ ORTTO_API_KEY: SECRETS.ORTTO_API_KEY, SERVER_TOKEN: SECRETS.SERVER_TOKEN });
  });

  it("refuses a --secrets-file that is not valid JSON without printing any of its text, and sets nothing", async ({ onTestFinished }) => {
    const { dir, state, setup } = standIn(onTestFinished);
    const file = join(dir, "secrets.json");
    // A value left unquoted: Node's JSON.parse error quotes the text around the mistake.
    writeFileSync(file, `{"ORTTO_API_KEY": ${SECRETS.ORTTO_API_KEY}, "SERVER_TOKEN": "${SECRETS.SERVER_TOKEN}"}`);
    const { code, output } = await setup(["--env", "production", "--secrets-file", file]);
    expect(code).not.toBe(0);
    expect(output).toContain("is not valid JSON");
    for (const part of [SECRETS.ORTTO_API_KEY, "never-printed", "4e1f", SECRETS.SERVER_TOKEN]) expect(output).not.toContain(part);
    expect(state().secrets).toEqual({});
  });
});
