#!/usr/bin/env node
/**
 * `node bench/ab.mjs [ref] [single|known|fresh]`: is a change to the relay faster? The working tree (B)
 * against a git ref (A, default HEAD), both bundled as `wrangler deploy` bundles them and run side by
 * side in one workerd with the relay's bindings, against the same instant upstream, 16 connections,
 * alternated over six rounds. Prints B's throughput over A's and the workerd process's CPU per
 * request for each. Two builds of the same code differ by up to ±5% here (a shared 2-core machine):
 * a change smaller than that needs several runs, or the CPU profile.
 * `BENCH_SECONDS` sets the length of a phase (default 2).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Miniflare } from "miniflare";
import { bundleRelay, CONNECTIONS, client, orttoWorker, quiet, relayWorker, root, workerdCpu, workloads } from "./harness.mjs";

const [ref = "HEAD", load = "single"] = process.argv.slice(2);
const PHASE_MS = Number(process.env.BENCH_SECONDS ?? 2) * 1000;

/** The tree at `dir` built (the snippet the worker embeds) and bundled. */
function bundle(dir) {
  execFileSync("npm", ["run", "build", "--silent"], { cwd: dir, stdio: "pipe" });
  return bundleRelay(dir);
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

// Two consumers of one queue would clash; the benchmark never reaches the queue.
const mf = new Miniflare({
  handleRuntimeStdio: quiet,
  workers: [
    relayWorker("a", scripts.a, { queueConsumers: undefined }),
    relayWorker("b", scripts.b, { queueConsumers: undefined }),
    orttoWorker(),
  ],
});
await mf.ready;
const targets = { a: await mf.unsafeGetDirectURL("a"), b: await mf.unsafeGetDirectURL("b") };
const make = workloads()[load];
if (!make) throw new Error(`unknown workload ${load}: single, known or fresh`);
const { post, close } = client();

/** CPU this run's workerd has used, in µs: the workers and the upstream share it. */
const cpu = workerdCpu();
const totals = { a: { ok: 0, other: 0, cpu: 0 }, b: { ok: 0, other: 0, cpu: 0 } };
async function phase(target, ms, count = true) {
  const end = performance.now() + ms;
  const before = cpu();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < end) {
        const { status } = await post(targets[target], make());
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
close();

const perRequest = (t) => (t.cpu / (t.ok + t.other)).toFixed(0);
console.log(`${load}: B (working tree) / A (${ref}) throughput ${(totals.b.ok / totals.a.ok).toFixed(3)}`);
console.log(`  ok requests: B ${totals.b.ok}, A ${totals.a.ok}; other answers: B ${totals.b.other}, A ${totals.a.other}`);
console.log(`  workerd CPU per request: B ${perRequest(totals.b)} µs, A ${perRequest(totals.a)} µs`);
