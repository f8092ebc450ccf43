#!/usr/bin/env node
/**
 * `npm run bench` (second half): the relay against the least a relay that reads what it forwards
 * must do (bench/ceiling-relay.js), and beside it the one-line alternative that reads nothing
 * (bench/pass-through.js), measured the way a user compares them. The three workers are bundled
 * as `wrangler deploy` bundles them and run in one workerd through Miniflare's API, against the
 * same instant upstream (bench/instant-ortto.js), with the relay's real bindings from
 * wrangler.toml (Durable Objects, rate limiter, queues, Analytics Engine), a signed identity and
 * logging on, as in production. 16 connections, phases alternated over three rounds; the result
 * is a ratio of throughputs, never an absolute time (this is a shared 2-core machine).
 *
 * Exits 1 when a ratio to the ceiling-relay falls below its CI floor, or when a relay request was
 * not answered 200 (a 202 would mean activities spilled to the queue although the upstream was
 * healthy). `BENCH_SECONDS` sets the length of a phase (default 0.5, so that `npm run bench`
 * stays under 35 s; the figures in docs/performance.md come from runs of 3).
 * `BENCH_ONLY=single,fresh` measures only those workloads.
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
  workerdCpu,
  workerOptions,
  workloads,
} from "./harness.mjs";

/**
 * The relay's throughput over the ceiling-relay's: the target (issue 24) is 0.85 in every
 * workload; the CI floors are regression guards a busy 2-core machine cannot trip by chance.
 */
export const TARGET = 0.85;
export const FLOOR = { single: 0.4, known: 0.15, fresh: 0.3 };
/** The fresh-people batch's p99, as a multiple of the pass-through's: target 3, guard 5. */
const P99_FACTOR = 5;

const PHASE_MS = Number(process.env.BENCH_SECONDS ?? 0.5) * 1000;
const WARM_MS = Math.min(1000, PHASE_MS);

const mf = new Miniflare({
  handleRuntimeStdio: quiet,
  workers: [
    relayWorker("relay", bundleRelay()),
    benchWorker("pass-through", "pass-through.js", { bindings: upstream, ...inFrontOfOrtto }),
    benchWorker("ceiling", "ceiling-relay.js", {
      ratelimits: workerOptions.ratelimits,
      bindings: { ...upstream, ALLOWED_ORIGINS: ORIGIN, SERVER_TOKEN },
      ...inFrontOfOrtto,
    }),
    orttoWorker(),
  ],
});
await mf.ready;
const targets = {
  relay: await mf.unsafeGetDirectURL("relay"),
  ceiling: await mf.unsafeGetDirectURL("ceiling"),
  pass: await mf.unsafeGetDirectURL("pass-through"),
};

/** CPU this run's workerd has used, in µs: the workers and the upstream share it. */
const cpu = workerdCpu();

const make = workloads();
const { post, close } = client();

/** `CONNECTIONS` closed loops against one target for `ms`; what came back. */
async function phase(url, make, ms, used = { us: 0 }) {
  const end = performance.now() + ms;
  const results = [];
  const before = cpu();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < end) {
        results.push(await post(url, make()));
      }
    }),
  );
  used.us += cpu() - before;
  return results;
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
function summary(results, ms, used) {
  const ok = results.filter((r) => r.status === 200);
  const times = ok.map((r) => r.ms).sort((a, b) => a - b);
  const statuses = {};
  for (const r of results) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  const cpuPerRequest = results.length ? used.us / results.length : 0;
  return { okPerSecond: (ok.length * 1000) / ms, p50: pct(times, 0.5), p99: pct(times, 0.99), statuses, cpuPerRequest };
}

async function compare(load, name) {
  const names = Object.keys(targets);
  for (const target of names) await phase(targets[target], make[load], WARM_MS); // warm-up: JIT, once-per-isolate work, object creation
  const all = Object.fromEntries(names.map((target) => [target, []]));
  const used = Object.fromEntries(names.map((target) => [target, { us: 0 }]));
  let ms = 0;
  for (const order of [names, [...names].reverse(), names]) {
    for (const target of order) all[target].push(...(await phase(targets[target], make[load], PHASE_MS, used[target])));
    ms += PHASE_MS;
  }
  const [relay, ceiling, pass] = names.map((target) => summary(all[target], ms, used[target]));
  return {
    load,
    name,
    relay,
    ceiling,
    pass,
    toCeiling: relay.okPerSecond / ceiling.okPerSecond,
    toPass: relay.okPerSecond / pass.okPerSecond,
  };
}

const LOADS = {
  single: "1 activity (signed visitor)",
  known: "100 activities, people seen before",
  fresh: "100 activities, 100 new people",
};
const only = process.env.BENCH_ONLY?.split(",");
const rows = [];
for (const [load, name] of Object.entries(LOADS)) if (!only || only.includes(load)) rows.push(await compare(load, name));
await mf.dispose();
close();

const f = (n, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
console.log(
  `\nRelay vs ceiling-relay and pass-through (same workerd, same upstream, ${CONNECTIONS} connections, alternated, 3 rounds of ${PHASE_MS / 1000} s)`,
);
console.log("  request                             relay ok/s  p50 / p99 ms   ceiling ok/s  pass ok/s  pass p99 ms  ÷ ceiling  ÷ pass");
for (const { name, relay, ceiling, pass, toCeiling, toPass } of rows) {
  console.log(
    `  ${name.padEnd(35)} ${f(relay.okPerSecond).padStart(9)}  ${`${f(relay.p50, 1)} / ${f(relay.p99, 1)}`.padEnd(13)} ${f(ceiling.okPerSecond).padStart(11)} ${f(pass.okPerSecond).padStart(10)}  ${f(pass.p99, 1).padStart(11)}  ${f(toCeiling, 2).padStart(9)} ${f(toPass, 2).padStart(7)}`,
  );
}
const problems = [];
for (const { load, name, relay, pass, toCeiling } of rows) {
  if (toCeiling < FLOOR[load]) problems.push(`${name}: ratio to the ceiling-relay ${f(toCeiling, 2)} is below its floor ${FLOOR[load]}`);
  else if (toCeiling < TARGET) console.log(`  ${name}: ratio to the ceiling-relay ${f(toCeiling, 2)}, target ${TARGET} (not met yet)`);
  if (load === "fresh" && relay.p99 > P99_FACTOR * pass.p99)
    problems.push(`${name}: p99 ${f(relay.p99, 1)} ms is over ${P99_FACTOR}× the pass-through's ${f(pass.p99, 1)} ms`);
  const other = Object.entries(relay.statuses).filter(([status]) => status !== "200");
  if (other.length) problems.push(`${name}: the relay answered ${other.map(([s, n]) => `${n}× ${s}`).join(", ")} (expected only 200)`);
}
// Each request's CPU in workerd, the upstream's included (the pass-through's is little else): what
// the relay's own work costs against the ceiling-relay's.
console.log("  workerd CPU a request (upstream included), µs: relay / ceiling / pass-through");
for (const { name, relay, ceiling, pass } of rows) {
  console.log(`  ${name.padEnd(35)} ${f(relay.cpuPerRequest)} / ${f(ceiling.cpuPerRequest)} / ${f(pass.cpuPerRequest)}`);
}
for (const p of problems) console.error(`bench: ${p}`);
if (problems.length) process.exit(1);
