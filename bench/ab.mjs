#!/usr/bin/env node
/**
 * `node bench/ab.mjs [ref] [single|batch]`: is a change to the relay faster? The working tree (B)
 * against a git ref (A, default HEAD), both bundled as `wrangler deploy` bundles them and run side by
 * side in one workerd with the relay's bindings, against the same instant upstream, 16 connections,
 * alternated over six rounds. Prints B's throughput over A's and the workerd process's CPU per
 * request for each. Two builds of the same code differ by up to ±5% here (a shared 2-core machine):
 * a change smaller than that needs several runs, or the CPU profile.
 * `BENCH_SECONDS` sets the length of a phase (default 2).
 */
import { execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { placedOrder } from "./workload.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const [ref = "HEAD", load = "single"] = process.argv.slice(2);
const PHASE_MS = Number(process.env.BENCH_SECONDS ?? 2) * 1000;
const CONNECTIONS = 16;
const SECRET = "bench-identity-secret";
const SERVER_TOKEN = "bench-server-token";
const ORIGIN = "https://shop.example";

function bundle(dir) {
  const out = mkdtempSync(join(tmpdir(), "relay-ab-out-"));
  execFileSync("npm", ["run", "build", "--silent"], { cwd: dir, stdio: "pipe" });
  execFileSync(join(root, "node_modules", ".bin", "wrangler"), ["deploy", "--dry-run", "--outdir", out], {
    cwd: dir,
    stdio: "pipe",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  const script = readFileSync(join(out, "index.js"), "utf8");
  rmSync(out, { recursive: true, force: true });
  return script;
}

// A: the ref, checked out beside the repository for as long as it takes to bundle it.
const tree = mkdtempSync(join(tmpdir(), "relay-ab-"));
execFileSync("git", ["worktree", "add", "--detach", tree, ref], { cwd: root, stdio: "pipe" });
let scripts;
try {
  symlinkSync(join(root, "node_modules"), join(tree, "node_modules"));
  scripts = { a: bundle(tree), b: bundle(root) };
} finally {
  execFileSync("git", ["worktree", "remove", "--force", tree], { cwd: root, stdio: "pipe" });
}

const { workerOptions } = unstable_getMiniflareWorkerOptions(join(root, "wrangler.toml"));
const upstream = { ORTTO_API_BASE: "http://ortto.bench", ORTTO_API_KEY: "bench-key" };
const relay = (name) => ({
  ...workerOptions,
  // Two consumers of one queue would clash; the benchmark never reaches the queue.
  queueConsumers: undefined,
  name,
  modules: [{ type: "ESModule", path: "index.js", contents: scripts[name] }],
  bindings: {
    ...workerOptions.bindings,
    ...upstream,
    ALLOWED_ORIGINS: ORIGIN,
    IDENTITY_SECRET: SECRET,
    SERVER_TOKEN,
    ORTTO_MAX_RPS: "1000000",
  },
  outboundService: "ortto",
  unsafeDirectSockets: [{ port: 0 }],
});
const mf = new Miniflare({
  handleRuntimeStdio(stdout, stderr) {
    stdout.resume();
    stderr.resume();
  },
  workers: [
    relay("a"),
    relay("b"),
    {
      name: "ortto",
      modules: [{ type: "ESModule", path: "instant-ortto.js", contents: readFileSync(join(root, "bench/instant-ortto.js"), "utf8") }],
      compatibilityDate: workerOptions.compatibilityDate,
    },
  ],
});
await mf.ready;
const targets = { a: await mf.unsafeGetDirectURL("a"), b: await mf.unsafeGetDirectURL("b") };

// The workloads of bench/compare.mjs: a signed visitor's event (one of 2,000), or a server's 100 new people.
const visitors = Array.from({ length: 2000 }, (_, i) => {
  const email = `visitor${i}@example.com`;
  return { email, token: createHmac("sha256", SECRET).update(email).digest("hex") };
});
let sent = 0;
let people = 0;
const key = (i) => `ab-${i}-${Math.random().toString(36).slice(2)}`;
const make = {
  single: () => {
    const v = visitors[sent % visitors.length];
    return {
      headers: {
        Origin: ORIGIN,
        "Content-Type": "text/plain",
        "CF-Connecting-IP": `198.18.${(sent >> 8) & 255}.${sent & 255}`,
        "User-Agent": "Mozilla/5.0 (bench)",
      },
      body: JSON.stringify({ identity_token: v.token, activities: [placedOrder(v.email, key(sent))] }),
    };
  },
  batch: () => ({
    headers: { Authorization: `Bearer ${SERVER_TOKEN}`, "Content-Type": "application/json", "CF-Connecting-IP": "203.0.113.9" },
    body: JSON.stringify({ activities: Array.from({ length: 100 }, (_, i) => placedOrder(`person${people++}@example.com`, key(i))) }),
  }),
}[load];

const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
const post = (url, { headers, body }) =>
  new Promise((resolve) => {
    const req = request(
      new URL("/v1/activities/create", url),
      { method: "POST", agent, headers: { ...headers, "Content-Length": Buffer.byteLength(body) } },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode));
      },
    );
    req.on("error", () => resolve(0));
    req.end(body);
  });

const workerd = execFileSync("pgrep", ["-f", "workerd serve"]).toString().trim().split("\n").at(-1);
/** CPU the workerd process has used, in µs (utime + stime, in clock ticks of 10 ms). */
const cpu = () => {
  const fields = readFileSync(`/proc/${workerd}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
};
const totals = { a: { ok: 0, other: 0, cpu: 0 }, b: { ok: 0, other: 0, cpu: 0 } };
async function phase(target, ms, count = true) {
  const end = performance.now() + ms;
  const before = cpu();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < end) {
        const status = await post(targets[target], make());
        sent++;
        if (count) totals[target][status === 200 ? "ok" : "other"]++;
      }
    }),
  );
  if (count) totals[target].cpu += cpu() - before;
}

await phase("a", 1000, false);
await phase("b", 1000, false);
for (let round = 0; round < 6; round++) for (const target of round % 2 ? ["a", "b"] : ["b", "a"]) await phase(target, PHASE_MS);
await mf.dispose();
agent.destroy();

const perRequest = (t) => (t.cpu / (t.ok + t.other)).toFixed(0);
console.log(`${load}: B (working tree) / A (${ref}) throughput ${(totals.b.ok / totals.a.ok).toFixed(3)}`);
console.log(`  ok requests: B ${totals.b.ok}, A ${totals.a.ok}; other answers: B ${totals.b.other}, A ${totals.a.other}`);
console.log(`  workerd CPU per request: B ${perRequest(totals.b)} µs, A ${perRequest(totals.a)} µs`);
