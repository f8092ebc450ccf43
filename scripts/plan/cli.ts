/**
 * `npm run plan [-- push | diff | --json-schema [file]]` (scripts/plan.mjs runs this):
 *
 *   (none)          the tracking plan as Markdown, after checking every id is the one Ortto derives
 *                   from its name and kind, and Ortto's limits; exit 1 naming each problem
 *   push            creates or modifies the catalogue's activities and custom person fields in the
 *                   account, then writes its lock file (relay.plan.lock.json; relay.plan.<env>.lock.json
 *                   with --env); --dry-run prints what it would send instead;
 *                   --allow-breaking lets it through a breaking change (it still never deletes, nor
 *                   changes a kind in place); --env picks .dev.vars.<env> and wrangler.toml's [env.<env>]
 *   diff            the catalogue against the (environment's) lock file and, where it can be read, the account:
 *                   Markdown for a pull request, exit 1 on drift
 *   --json-schema   writes a JSON Schema of every activity's friendly and raw attributes
 *
 * The account: ORTTO_API_KEY with ORTTO_REGION or ORTTO_API_BASE, from the environment, else
 * .dev.vars (.dev.vars.<env> with --env), else wrangler.toml's vars. The key is never printed.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import type { ResolvedCatalogue } from "../../shared/catalogue.ts";
import {
  type AccountState,
  type Change,
  diffLocks,
  idProblems,
  type Lock,
  limitProblems,
  lockOf,
  lockOfAccount,
} from "../../shared/definitions.ts";
import { REGION_BASES } from "../../shared/regions.ts";
import { planTable } from "../plan-table.ts";
import { jsonSchema } from "./json-schema.ts";
import { orttoClient, planPush, readAccount, type Send, sendPlan } from "./push.ts";

export const LOCK_FILE = "relay.plan.lock.json";
/**
 * The lock of an environment's account: `relay.plan.lock.json`, `relay.plan.<env>.lock.json` with
 * --env. One per account, because where the account's activities cannot be read push trusts the
 * lock: a lock shared by staging and production would let a push to staging hide a change from
 * production.
 */
export const lockFileFor = (env: string | undefined) => (env ? `relay.plan.${env}.lock.json` : LOCK_FILE);

export interface Io {
  root: string;
  catalogue: ResolvedCatalogue;
  env: Record<string, string | undefined>;
  /** wrangler.toml's vars for an environment (scripts/plan.mjs reads them with wrangler). */
  wranglerVars?: (env: string | undefined) => Record<string, unknown>;
  out: (text: string) => void;
  err: (text: string) => void;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  /** How long a request to Ortto may go unanswered (default 30 s: orttoClient). */
  timeoutMs?: number;
}

/** `KEY=value` lines of a .dev.vars file (quotes stripped, comments skipped). */
export function parseDevVars(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m || line.trim().startsWith("#")) continue;
    vars[m[1] as string] = (m[2] as string).replace(/^(["'])(.*)\1$/, "$2");
  }
  return vars;
}

export interface AccountConfig {
  base: string;
  key: string;
  rps: number;
  /** Where the key came from, to name it (never its value). */
  keyFrom: string;
}

/**
 * The account push and diff talk to, found as the relay finds its upstream (worker/config.ts):
 * ORTTO_API_BASE, else ORTTO_REGION's host. Paced at half ORTTO_MAX_RPS (default 10, Ortto's
 * Professional budget): the deployed relay spends the same account's budget meanwhile.
 */
export function accountConfig(io: Io, envName: string | undefined): AccountConfig | { problem: string } {
  // With --env, only that environment's file: falling back to .dev.vars (the local account) would push
  // "production" to it and write production's lock file.
  const file = envName ? `.dev.vars.${envName}` : ".dev.vars";
  const devVars = existsSync(join(io.root, file)) ? parseDevVars(readFileSync(join(io.root, file), "utf8")) : {};
  // wrangler.toml is read only for what neither the environment nor .dev.vars sets (reading it loads wrangler).
  let wrangler: Record<string, unknown> | undefined;
  const pick = (name: string): [string | undefined, string] => {
    if (io.env[name]?.trim()) return [io.env[name]?.trim(), "the environment"];
    if (devVars[name]?.trim()) return [devVars[name]?.trim(), file];
    wrangler ??= io.wranglerVars?.(envName) ?? {};
    const v = wrangler[name];
    return [typeof v === "string" && v.trim() ? v.trim() : undefined, "wrangler.toml"];
  };
  const [key, keyFrom] = pick("ORTTO_API_KEY");
  if (!key) return { problem: `no ORTTO_API_KEY in the environment or ${file}` };
  const [base] = pick("ORTTO_API_BASE");
  const [region = "us"] = base ? [] : pick("ORTTO_REGION");
  if (!base && !Object.hasOwn(REGION_BASES, region))
    return { problem: `ORTTO_REGION must be one of ${Object.keys(REGION_BASES).join(", ")} (or set ORTTO_API_BASE)` };
  if (base && !/^https?:\/\/[^/\s]+/.test(base)) return { problem: "ORTTO_API_BASE must be an http(s) URL, such as http://127.0.0.1:8788" };
  const [budget] = pick("ORTTO_MAX_RPS");
  const rps = Math.max(1, Number(budget ?? 10) / 2 || 1);
  return {
    base: (base ?? REGION_BASES[region as keyof typeof REGION_BASES]).replace(/\/+$/, ""),
    key,
    rps,
    keyFrom: `${keyFrom} (ORTTO_API_KEY)`,
  };
}

/** The lock file, absent (nothing pushed yet), or a problem naming the file: a broken lock is never taken for none. */
function readLock(path: string): Lock | undefined | { problem: string } {
  if (!existsSync(path)) return undefined;
  let lock: unknown;
  try {
    lock = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    return {
      problem: `${path} is not JSON (${(err as Error).message}): restore it from git, or delete it to compare with the account only`,
    };
  }
  const isMap = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v);
  const l = lock as Partial<Lock>;
  if (
    !isMap(l) ||
    !isMap(l.activities) ||
    !isMap(l.personFields) ||
    !Object.values(l.activities ?? {}).every((a) => isMap(a) && typeof a.hash === "string" && isMap(a.attributes))
  )
    return {
      problem: `${path} is not a lock file (activities and personFields, each activity with hash and attributes): restore it from git`,
    };
  return lock as Lock;
}

/** The lock as committed: two-space JSON, one definition per key, in catalogue order. */
export const lockText = (lock: Lock) => `${JSON.stringify(lock, null, 2)}\n`;

const cell = (text: string) => text.replace(/\|/g, "\\|");

/** Changes as a Markdown table, breaking first. */
export function changesTable(changes: Change[]): string[] {
  const order = { breaking: 0, change: 1, note: 2 };
  const sorted = [...changes].sort((a, b) => order[a.level] - order[b.level]);
  return [
    "| | definition | what |",
    "| --- | --- | --- |",
    ...sorted.map((c) => `| ${c.level === "breaking" ? "**breaking**" : c.level} | \`${cell(c.subject)}\` | ${cell(c.message)} |`),
  ];
}

/** Never lets the key out, whatever an answer echoes. */
function redact(text: string, key: string | undefined): string {
  return key ? text.split(key).join("(the key)") : text;
}

async function readable(send: Send): Promise<AccountState | { problem: string }> {
  try {
    return await readAccount(send);
  } catch (err) {
    return { problem: (err as Error).message };
  }
}

const ACTIVITIES_UNREADABLE =
  "Ortto documents no read endpoint for activity definitions, and this account did not answer `POST /v1/instance-schema/get` with them: activities were compared with the lock file only.";

async function diff(io: Io, lockPath: string, envName: string | undefined): Promise<number> {
  const wanted = lockOf(io.catalogue);
  const lock = readLock(lockPath);
  if (lock && "problem" in lock) {
    io.err(`diff: ${lock.problem}\n`);
    return 1;
  }
  const lines = ["## Tracking plan: catalogue against what was pushed", ""];
  const changes: Change[] = [];
  const sources: string[] = [];
  const lockName = relative(io.root, lockPath) || lockPath;
  if (lock) {
    changes.push(...diffLocks(wanted, lock, "lock").map((c) => ({ ...c, subject: c.subject, message: `lock file: ${c.message}` })));
    sources.push(`the lock file (\`${lockName}\`)`);
  } else {
    changes.push({ level: "change", subject: lockName, message: "no lock file: nothing was pushed yet (`npm run plan -- push`)" });
  }
  const config = accountConfig(io, envName);
  let key: string | undefined;
  if ("problem" in config) lines.push(`The account was not read: ${config.problem}.`, "");
  else {
    key = config.key;
    const account = await readable(orttoClient({ ...config, fetch: io.fetch, sleep: io.sleep, timeoutMs: io.timeoutMs }));
    if ("problem" in account) {
      lines.push(`The account was not read: ${account.problem}.`, "");
      changes.push({ level: "change", subject: new URL(config.base).host, message: account.problem });
    } else {
      sources.push(`the account (${new URL(config.base).host})`);
      if (!account.activities) lines.push(ACTIVITIES_UNREADABLE, "");
      const modified = new Set(
        planPush(io.catalogue, lock, account).requests.flatMap((r) => (r.method === "PUT" && r.activity ? [r.activity] : [])),
      );
      const against = diffLocks(wanted, lockOfAccount(account), "account", modified);
      changes.push(...against.map((c) => ({ ...c, message: `account: ${c.message}` })));
    }
  }
  if (sources.length) lines.splice(2, 0, `Compared with ${sources.join(" and ")}.`, "");
  const drift = changes.filter((c) => c.level !== "note");
  const breaking = changes.filter((c) => c.level === "breaking");
  if (changes.length) lines.push(...changesTable(changes), "");
  lines.push(
    drift.length
      ? `**Drift: ${breaking.length} breaking, ${drift.length - breaking.length} other.** ${breaking.length ? "`push` refuses breaking changes without `--allow-breaking`; see docs/plan.md for what to do instead." : "`npm run plan -- push` resolves it."}`
      : "No drift.",
    "",
  );
  io.out(redact(lines.join("\n"), key));
  return drift.length ? 1 : 0;
}

const REFUSAL_ADVICE = [
  "What to do instead: keep the old id in the catalogue while anything sends it, and give the new meaning a new",
  "attribute (another name, so another id); archive the old one in Ortto's app when nothing sends it.",
  "To push anyway: npm run plan -- push --allow-breaking (push still never deletes, nor changes a kind in place).",
];

async function push(io: Io, lockPath: string, envName: string | undefined, dryRun: boolean, allowBreaking: boolean): Promise<number> {
  const config = accountConfig(io, envName);
  const lock = readLock(lockPath);
  if (lock && "problem" in lock) {
    io.err(`push: ${lock.problem}; nothing was sent\n`);
    return 1;
  }
  let account: AccountState = {};
  let key: string | undefined;
  let send: Send | undefined;
  const notes: string[] = [];
  if ("problem" in config) {
    if (!dryRun) {
      io.err(`push: ${config.problem}; set it (and ORTTO_REGION or ORTTO_API_BASE) in the environment or .dev.vars\n`);
      return 1;
    }
    notes.push(`the account was not read (${config.problem}): planned against the lock file`);
  } else {
    key = config.key;
    const k = key;
    send = orttoClient({ ...config, fetch: io.fetch, sleep: io.sleep, timeoutMs: io.timeoutMs, log: (l) => io.err(redact(`${l}\n`, k)) });
    const read = await readable(send);
    if ("problem" in read) {
      io.err(redact(`push: the account could not be read: ${read.problem}; nothing was sent\n`, key));
      return 1;
    }
    account = read;
    if (!account.activities) notes.push(ACTIVITIES_UNREADABLE);
  }
  const plan = planPush(io.catalogue, lock, account);
  const say = (text: string) => io.out(redact(text, key));
  if (plan.problems.length) {
    io.err(`push: the catalogue cannot be pushed, nothing was sent:\n  ${plan.problems.join("\n  ")}\n`);
    return 1;
  }
  const inPlace = plan.breaking.filter((c) => c.message.startsWith("kind changed"));
  if (inPlace.length || (plan.breaking.length && !allowBreaking)) {
    const list = (inPlace.length && allowBreaking ? inPlace : plan.breaking).map((c) => `  - ${c.subject}: ${c.message}`);
    io.err(
      `push: ${inPlace.length && allowBreaking ? "push never changes a kind in place" : "breaking changes"}, nothing was sent:\n${list.join("\n")}\n${REFUSAL_ADVICE.join("\n")}\n`,
    );
    return 1;
  }
  for (const note of notes) say(`note: ${note}\n`);
  for (const k of plan.kept) say(`kept: ${k} (push never deletes)\n`);
  const target = "problem" in config ? "(no account)" : config.base;
  if (dryRun) {
    say(`dry run: ${plan.requests.length} request${plan.requests.length === 1 ? "" : "s"} would be sent to ${target}; nothing is sent\n`);
    for (const r of plan.requests)
      say(
        `\n# ${r.reason}\n${r.method} ${target}${r.path}\nX-Api-Key: (${"problem" in config ? "none" : config.keyFrom}, not shown)\nContent-Type: application/json\n\n${JSON.stringify(r.body, null, 2)}\n`,
      );
    return 0;
  }
  if (!send) return 1;
  const failures = await sendPlan(send, plan.requests, (l) => say(`${l}\n`), { modifyUnseen: allowBreaking });
  if (failures.length) {
    io.err(
      redact(
        `push: ${failures.join("; ")}\npush stopped there; the lock file is unchanged. Run push again once that is fixed: it sends only what the account still lacks.\n`,
        key,
      ),
    );
    return 1;
  }
  writeFileSync(lockPath, lockText(lockOf(io.catalogue)));
  const done = plan.requests.length
    ? `pushed ${plan.requests.length} change${plan.requests.length === 1 ? "" : "s"} to ${target}`
    : `nothing to push: ${target} already holds the catalogue`;
  say(`${done}; wrote ${relative(io.root, lockPath) || lockPath}\n`);
  return 0;
}

const USAGE =
  "usage: npm run plan [-- push [--env name] [--dry-run] [--allow-breaking] | diff [--env name] | --json-schema [file]] [--lock file]";

/** Runs `npm run plan` with these arguments; resolves with the exit code. */
export async function main(argv: string[], io: Io): Promise<number> {
  // `--json-schema` without a file name writes the default one.
  const args = argv.map((a, i) =>
    a === "--json-schema" && (argv[i + 1] === undefined || argv[i + 1]?.startsWith("-")) ? "--json-schema=relay.schema.json" : a,
  );
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        env: { type: "string" },
        "dry-run": { type: "boolean" },
        "allow-breaking": { type: "boolean" },
        "json-schema": { type: "string" },
        lock: { type: "string" },
      },
    });
  } catch (err) {
    io.err(`plan: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const command = positionals[0];
  const env = typeof values.env === "string" ? values.env : undefined;
  const lockPath = typeof values.lock === "string" ? values.lock : join(io.root, lockFileFor(env));
  if (typeof values["json-schema"] === "string") {
    const file = join(io.root, values["json-schema"]);
    writeFileSync(file, `${JSON.stringify(jsonSchema(io.catalogue), null, 2)}\n`);
    io.out(
      `wrote ${relative(io.root, file)}: the friendly and raw attributes of ${Object.keys(io.catalogue.activities).length} activities\n`,
    );
    return 0;
  }
  if (command === "push") return push(io, lockPath, env, values["dry-run"] === true, values["allow-breaking"] === true);
  if (command === "diff") return diff(io, lockPath, env);
  if (command !== undefined) {
    io.err(`plan: unknown command ${command}\n${USAGE}\n`);
    return 2;
  }
  io.out(planTable(io.catalogue));
  const problems = [...idProblems(io.catalogue), ...limitProblems(io.catalogue)];
  if (problems.length) {
    io.err(`\nThe catalogue does not match what Ortto will create:\n  ${problems.join("\n  ")}\n`);
    return 1;
  }
  return 0;
}
