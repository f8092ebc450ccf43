#!/usr/bin/env node
/**
 * `node bench/profile.mjs [single|known|fresh] [seconds]`: where the relay's CPU goes in workerd.
 * The relay is bundled as `wrangler deploy` bundles it but not minified (so functions keep their
 * names), run in Miniflare with its bindings against the instant upstream, warmed up, then loaded
 * with 16 connections while workerd's V8 inspector records a CPU profile of the relay's isolate
 * (its Durable Objects included). Writes `.tmp/relay-<workload>.cpuprofile` (open it in Chrome
 * DevTools, Performance) and prints the functions with the most self and total time, in µs per
 * request, and self time by source module (the runtime's own functions by name). The inspector
 * adds its own cost: compare shares, not absolute times.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Miniflare } from "miniflare";
import WebSocket from "ws";
import { CONNECTIONS, client, orttoWorker, quiet, relayWorker, root, workloads } from "./harness.mjs";

const [load = "fresh", seconds = "5"] = process.argv.slice(2);
const make = workloads()[load];
if (!make) throw new Error(`unknown workload ${load}: single, known or fresh`);
const PORT = 9339;

const out = mkdtempSync(join(tmpdir(), "relay-profile-"));
let script;
try {
  execFileSync(join(root, "node_modules", ".bin", "wrangler"), ["deploy", "--dry-run", "--outdir", out, "--minify=false"], {
    cwd: root,
    stdio: "pipe",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  script = readFileSync(join(out, "index.js"), "utf8");
} finally {
  rmSync(out, { recursive: true, force: true });
}

const mf = new Miniflare({
  inspectorPort: PORT,
  handleRuntimeStdio: quiet,
  workers: [relayWorker("relay", script, { queueConsumers: undefined }), orttoWorker()],
});
await mf.ready;
const url = await mf.unsafeGetDirectURL("relay");
const { post, close } = client();
async function phase(ms) {
  const end = performance.now() + ms;
  let n = 0;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < end) {
        const { status } = await post(url, make());
        if (status !== 200) throw new Error(`the relay answered ${status}`);
        n++;
      }
    }),
  );
  return n;
}
await phase(1500); // warm-up: JIT, once-per-isolate work

const targets = await (await fetch(`http://127.0.0.1:${PORT}/json/list`)).json();
const target = targets.find((t) => t.webSocketDebuggerUrl.endsWith("/core:user:relay"));
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve) => ws.on("open", resolve));
let id = 0;
const pending = new Map();
ws.on("message", (data) => {
  const message = JSON.parse(data);
  pending.get(message.id)?.(message.result);
  pending.delete(message.id);
});
const send = (method, params = {}) =>
  new Promise((resolve) => {
    pending.set(++id, resolve);
    ws.send(JSON.stringify({ id, method, params }));
  });
await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: 200 });
await send("Profiler.start");
const requests = await phase(Number(seconds) * 1000);
const { profile } = await send("Profiler.stop");
ws.close();
await mf.dispose();
close();

mkdirSync(join(root, ".tmp"), { recursive: true });
const file = join(root, ".tmp", `relay-${load}.cpuprofile`);
writeFileSync(file, JSON.stringify(profile));

// Self and total time per function (a function counted once per sample however deep it recurs).
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const name = (n) => `${n.callFrame.functionName || "(anonymous)"} :${n.callFrame.lineNumber + 1}`;
const self = new Map();
const total = new Map();
const add = (map, key, us) => map.set(key, (map.get(key) ?? 0) + us);
let busy = 0;
profile.samples.forEach((sample, i) => {
  const us = profile.timeDeltas[i + 1] ?? 0;
  const node = nodes.get(sample);
  if (node.callFrame.functionName === "(idle)") return;
  busy += us;
  add(self, name(node), us);
  const seen = new Set();
  for (let at = sample; at !== undefined; at = parent.get(at)) seen.add(name(nodes.get(at)));
  for (const key of seen) add(total, key, us);
});
const top = (map) =>
  [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 25)
    .map(([key, us]) => `  ${(us / requests).toFixed(0).padStart(6)} µs  ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${key}`)
    .join("\n");
// Self time by source module: esbuild marks where each module starts in the unminified bundle
// (`// worker/limits/counts.ts`); a dependency counts as its package, the runtime's own functions
// (SQLite's `exec`, `fetch`, the garbage collector) by name.
const starts = [];
script.split("\n").forEach((line, i) => {
  const m = /^\/\/ ((?:node_modules\/)?[\w@.\-/]+\.[cm]?[jt]s)$/.exec(line);
  if (m) starts.push([i, m[1].replace(/^node_modules\/((?:@[^/]+\/)?[^/]+)\/.*/, "$1")]);
});
const moduleOf = (frame) => {
  if (frame.url !== "index.js") return `(runtime) ${frame.functionName || "(anonymous)"}`;
  let found = "(bundle)";
  for (const [line, module] of starts) {
    if (line > frame.lineNumber) break;
    found = module;
  }
  return found;
};
const byModule = new Map();
profile.samples.forEach((sample, i) => {
  const node = nodes.get(sample);
  if (node.callFrame.functionName !== "(idle)") add(byModule, moduleOf(node.callFrame), profile.timeDeltas[i + 1] ?? 0);
});
console.log(`${load}: ${requests} requests, ${(busy / requests).toFixed(0)} µs of the relay's isolate each (under the profiler)`);
console.log(`self time:\n${top(self)}\ntotal time:\n${top(total)}\nself time by module:\n${top(byModule)}\nprofile: ${file}`);
