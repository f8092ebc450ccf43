#!/usr/bin/env node
/**
 * `npm run bench` (first half): the relay against the one-line alternative, measured the way a
 * user compares them. Both workers are bundled as `wrangler deploy` bundles them and run in one
 * workerd through Miniflare's API, against the same instant upstream (bench/instant-ortto.js),
 * with the relay's real bindings from wrangler.toml (Durable Objects, rate limiter, queues,
 * Analytics Engine), a signed identity and logging on, as in production. 16 connections, phases
 * alternated relay / pass-through, three rounds; the result is a ratio of throughputs, never an
 * absolute time (this is a shared 2-core machine).
 *
 * Exits 1 when a ratio falls below its CI floor, or when a relay request was not answered 200
 * (a 202 would mean activities spilled to the queue although the upstream was healthy).
 * `BENCH_SECONDS` sets the length of a phase (default 2; the README's figures come from runs of 3).
 */
import { Miniflare } from "miniflare";
import {
  benchWorker,
  bundleRelay,
  CONNECTIONS,
  client,
  inFrontOfOrtto,
  ORIGIN,
  orttoWorker,
  quiet,
  relayWorker,
  SERVER_TOKEN,
  upstream,
  workerOptions,
  workloads,
} from "./harness.mjs";

/**
 * Regression guards a noisy 2-core machine cannot trip by chance, set under what the relay reaches
 * today (README, Budgets). The targets, 0.9 and 0.75, are over what even the ceiling-relay reaches
 * in most runs (BENCH_CEILING=1, below); the CI floors would be 0.7 and 0.5 if they were met.
 */
export const FLOOR = { single: 0.25, batch: 0.2 };
export const TARGET = { single: 0.9, batch: 0.75 };
/** The 100-activity request's p99, as a multiple of the pass-through's: target 3, guard 5. */
const P99_FACTOR = 5;

const PHASE_MS = Number(process.env.BENCH_SECONDS ?? 2) * 1000;
/**
 * BENCH_CEILING=1: the ceiling-relay (bench/ceiling-relay.js, the least a relay that reads what it
 * forwards must do) is measured too, alternated with the other two: the ratio no relay of this kind
 * can pass on this machine.
 */
const CEILING = process.env.BENCH_CEILING === "1";

const mf = new Miniflare({
  handleRuntimeStdio: quiet,
  workers: [
    relayWorker("relay", bundleRelay()),
    benchWorker("pass-through", "pass-through.js", { bindings: upstream, ...inFrontOfOrtto }),
    ...(CEILING
      ? [
          benchWorker("ceiling", "ceiling-relay.js", {
            ratelimits: workerOptions.ratelimits,
            bindings: { ...upstream, ALLOWED_ORIGINS: ORIGIN, SERVER_TOKEN },
            ...inFrontOfOrtto,
          }),
        ]
      : []),
    orttoWorker(),
  ],
});
await mf.ready;
const targets = { relay: await mf.unsafeGetDirectURL("relay"), pass: await mf.unsafeGetDirectURL("pass-through") };
if (CEILING) targets.ceiling = await mf.unsafeGetDirectURL("ceiling");

const { single, batch } = workloads();
const { post, close } = client();

/** `CONNECTIONS` closed loops against one target for `ms`; what came back. */
async function phase(url, make, ms) {
  const end = performance.now() + ms;
  const results = [];
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < end) {
        results.push(await post(url, make()));
      }
    }),
  );
  return results;
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
function summary(results, ms) {
  const ok = results.filter((r) => r.status === 200);
  const times = ok.map((r) => r.ms).sort((a, b) => a - b);
  const statuses = {};
  for (const r of results) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  return { okPerSecond: (ok.length * 1000) / ms, p50: pct(times, 0.5), p99: pct(times, 0.99), statuses };
}

async function compare(name, make) {
  const names = Object.keys(targets);
  for (const target of names) await phase(targets[target], make, 1000); // warm-up: JIT, once-per-isolate work, object creation
  const all = Object.fromEntries(names.map((target) => [target, []]));
  let ms = 0;
  for (const order of [names, [...names].reverse(), names]) {
    for (const target of order) all[target].push(...(await phase(targets[target], make, PHASE_MS)));
    ms += PHASE_MS;
  }
  const relay = summary(all.relay, ms);
  const pass = summary(all.pass, ms);
  const ceiling = all.ceiling && summary(all.ceiling, ms);
  return { name, relay, pass, ratio: relay.okPerSecond / pass.okPerSecond, ceiling: ceiling && ceiling.okPerSecond / pass.okPerSecond };
}

const only = process.env.BENCH_ONLY; // "single" or "batch": one comparison, when investigating
const rows = [
  only === "batch" ? undefined : await compare("1 activity (signed visitor)", single),
  only === "single" ? undefined : await compare("100 activities of 100 people", batch),
].filter(Boolean);
await mf.dispose();
close();

const f = (n, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
console.log("\nRelay vs pass-through worker (same workerd, same upstream, 16 connections, alternated, 3 rounds)");
console.log("  request                        relay ok/s  p50 / p99 ms      pass ok/s  p50 / p99 ms      ratio");
for (const { name, relay, pass, ratio } of rows) {
  console.log(
    `  ${name.padEnd(30)} ${f(relay.okPerSecond).padStart(9)}  ${`${f(relay.p50, 1)} / ${f(relay.p99, 1)}`.padEnd(16)} ${f(pass.okPerSecond).padStart(9)}  ${`${f(pass.p50, 1)} / ${f(pass.p99, 1)}`.padEnd(16)} ${f(ratio, 2).padStart(6)}`,
  );
}
if (CEILING) for (const { name, ceiling } of rows) console.log(`  ${name}: ceiling-relay ratio ${f(ceiling, 2)}`);
const problems = [];
const one = rows.find((r) => r.name.startsWith("1 "));
const hundred = rows.find((r) => r.name.startsWith("100 "));
if (one && one.ratio < FLOOR.single) problems.push(`1-activity ratio ${f(one.ratio, 2)} is below its floor ${FLOOR.single}`);
if (hundred && hundred.ratio < FLOOR.batch) problems.push(`100-activity ratio ${f(hundred.ratio, 2)} is below its floor ${FLOOR.batch}`);
if (hundred && hundred.relay.p99 > P99_FACTOR * hundred.pass.p99)
  problems.push(`100-activity p99 ${f(hundred.relay.p99, 1)} ms is over ${P99_FACTOR}× the pass-through's ${f(hundred.pass.p99, 1)} ms`);
for (const { name, relay } of rows) {
  const other = Object.entries(relay.statuses).filter(([status]) => status !== "200");
  if (other.length) problems.push(`${name}: the relay answered ${other.map(([s, n]) => `${n}× ${s}`).join(", ")} (expected only 200)`);
}
for (const [row, target] of [
  [one, TARGET.single],
  [hundred, TARGET.batch],
]) {
  if (row && row.ratio < target) console.log(`  ${row.name}: ratio ${f(row.ratio, 2)}, target ${target} (not met yet)`);
}
for (const p of problems) console.error(`bench: ${p}`);
if (problems.length) process.exit(1);
