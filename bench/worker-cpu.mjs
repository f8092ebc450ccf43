#!/usr/bin/env node
import { fileURLToPath } from "node:url";
// The relay's CPU cost per request and per event: the whole fetch handler (routing, CORS,
// origin and limits, body read, schema, identity, enrichment, forwarding, logging), bundled as
// wrangler bundles it, in V8 (the engine workerd runs), with bindings and Ortto answering at
// once so only the relay's own work is timed. Workers bills and limits CPU time, not wall
// time (the free plan allows 10 ms a request), and workerd's clocks do not advance during
// CPU work, so this runs in Node. Fails over the budgets below.
import { build } from "esbuild";
import { placedOrder } from "./workload.mjs";

// Node's WebCrypto and undici Request/Response cost more than workerd's native ones (the
// "floor" row measures them with a handler that does nothing), so these are upper bounds.
const BUDGET = {
  /** One activity, the common case from the snippet: a fifth of the free plan's 10 ms. */
  singleRequestUs: 2000,
  /**
   * A server's full batch: 100 activities of 100 different people, with the server token. The
   * target is 20 µs an event (2,000 µs); this guard, 50 µs an event, catches regressions on a
   * loaded machine while the target is worked towards (README, Budgets).
   */
  fullBatchRequestUs: 5000,
  /** The same with 100 people never seen before in every request (the target is 10 µs an event). */
  freshBatchRequestUs: 5000,
};

const root = fileURLToPath(new URL("..", import.meta.url));
const out = `${root}.tmp/bench-worker.mjs`;
await build({
  entryPoints: [`${root}worker/index.ts`],
  bundle: true,
  minify: true,
  format: "esm",
  platform: "neutral",
  mainFields: ["module", "main"],
  conditions: ["workerd", "worker", "browser", "import"],
  outfile: out,
  alias: { "cloudflare:workers": `${root}bench/cloudflare-workers-stub.mjs` },
  logLevel: "warning",
});
const { default: worker } = await import(out);

const secret = "bench-identity-secret";
const env = {
  ORTTO_REGION: "us",
  ALLOWED_ORIGINS: "https://shop.example",
  GEO_MODE: "ip",
  UPSTREAM_TIMEOUT_MS: "5000",
  DELIVERY: "inline",
  // The benchmark sends thousands of requests a second from one isolate: under Ortto's real budget
  // (ORTTO_MAX_RPS, 10) they would coalesce into the queue; this measures the inline path.
  ORTTO_MAX_RPS: "1000000",
  ORTTO_API_KEY: "bench-key",
  ORTTO_API_BASE: "https://ortto.bench",
  IDENTITY_SECRET: secret,
  DELIVERY_QUEUE: { sendBatch: async () => {} },
  DEAD_LETTERS: { sendBatch: async () => {} },
  DEAD_LETTER_QUEUE: "ortto-relay-dead-letters",
  SERVER_TOKEN: "bench-server-token",
  LIMIT_LEDGER: { idFromName: (n) => n, get: () => ({ sync: async (entries) => entries.map(() => ({ count: 0, known: 0, freesAt: 0 })) }) },
  IP_RATE_LIMITER: { limit: async () => ({ success: true }) },
  RELAY_EVENTS: { writeDataPoint() {} },
};
const ortto = (n) =>
  JSON.stringify({
    activities: Array.from({ length: n }, () => ({
      person_id: "00600e153df0a3b67ce60f00",
      person_status: "merged",
      activity_id: "00600e153c548806f6a4dbda",
      status: "ingested",
    })),
  });
const answers = { 1: ortto(1), 100: ortto(100) };
// Ortto answering at once, one result per activity (counted without parsing: only the relay's work is timed).
const count = (text) => {
  let n = 0;
  for (let i = text.indexOf('"activity_id"'); i !== -1; i = text.indexOf('"activity_id"', i + 13)) n++;
  return n;
};
globalThis.fetch = async (_url, init) => {
  const n = count(init.body);
  return new Response(answers[n] ?? ortto(n), { status: 200 });
};
console.log = () => {}; // the relay's log lines; their cost is in the measurement, not their printing

const { createHmac } = await import("node:crypto");
const email = "chris@example.com";
const token = createHmac("sha256", secret).update(email).digest("hex");
const activity = (who = email) => placedOrder(who, crypto.randomUUID());
// One visitor's event, signed, as the snippet sends it; and a server's batch of 100 people's events
// with the server token (a visitor's token signs one person), as big as Ortto takes.
const body = (n) =>
  n === 1
    ? JSON.stringify({ identity_token: token, activities: [activity()] })
    : JSON.stringify({ activities: Array.from({ length: n }, (_, i) => activity(`visitor${i}@example.com`)) });
const bodies = { 1: Array.from({ length: 64 }, () => body(1)), 100: Array.from({ length: 8 }, () => body(100)) };
// New people in every request: each body made beforehand (its making is not the relay's work), used once.
const FRESH_REQUESTS = 200;
let people = 0;
const freshBody = () => JSON.stringify({ activities: Array.from({ length: 100 }, () => activity(`person${people++}@example.com`)) });
// Enough for the relay's run and the ceiling-relay's, each with its warm-up.
bodies.fresh = Array.from({ length: 2 * (Math.ceil(FRESH_REQUESTS / 4) + FRESH_REQUESTS) }, freshBody);
let freshSent = 0;

/** What any handler costs here: reading the body and answering JSON, with nothing else. */
const floor = {
  async fetch(request) {
    await request.text();
    return Response.json({ activities: [] });
  },
};

const openEnv = { ...env, IDENTITY_SECRET: undefined };

/**
 * The least a relay that reads what it forwards must do (bench/ceiling-relay.js, which
 * `npm run bench` measures the relay against in workerd), here in Node: what the fresh batch's
 * CPU per event cannot go below in this measurement.
 */
const { default: ceilingRelay } = await import("./ceiling-relay.js");
const ceiling = {
  fetch: (request, _env, ctx) =>
    ceilingRelay.fetch(request, { ...openEnv, ALLOWED_ORIGINS: env.ALLOWED_ORIGINS, SERVER_TOKEN: env.SERVER_TOKEN }, ctx),
};

async function run(n, requests, handler = worker) {
  const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} };
  for (let i = 0; i < requests; i++) {
    const body = n === "fresh" ? bodies.fresh[freshSent++] : bodies[n][i % bodies[n].length];
    // As an HTTP request reaches the worker: with its Content-Length (without it, the body limit reads the body as a stream).
    const length = String(Buffer.byteLength(body));
    const res = await handler.fetch(
      new Request("https://relay.example/v1/activities/create", {
        method: "POST",
        headers:
          n === 1
            ? { Origin: "https://shop.example", "Content-Type": "text/plain", "Content-Length": length, "CF-Connecting-IP": "203.0.113.7" }
            : {
                Authorization: "Bearer bench-server-token",
                "Content-Type": "application/json",
                "Content-Length": length,
                "CF-Connecting-IP": "203.0.113.7",
              },
        body,
      }),
      n === 1 ? env : openEnv,
      ctx,
    );
    if (res.status !== 200 && handler === worker) throw new Error(`benchmark request answered ${res.status}: ${await res.text()}`);
    await res.arrayBuffer();
  }
}

async function measure(n, requests, handler = worker) {
  await run(n, Math.ceil(requests / 4), handler); // warm up: JIT, the once-per-isolate schema build
  const before = process.cpuUsage();
  await run(n, requests, handler);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / requests;
}

const single = await measure(1, 2000);
const batch = await measure(100, 200);
const fresh = await measure("fresh", FRESH_REQUESTS);
const ceilingFresh = await measure("fresh", FRESH_REQUESTS, ceiling);
const floorSingle = await measure(1, 2000, floor);
const rows = [
  ["1 activity per request", single, single, BUDGET.singleRequestUs],
  ["100 activities per request", batch, batch / 100, BUDGET.fullBatchRequestUs],
  ["100 activities, new people", fresh, fresh / 100, BUDGET.freshBatchRequestUs],
];
const floorRows = [
  ["ceiling-relay, new people", ceilingFresh, ceilingFresh / 100],
  ["floor: a do-nothing handler", floorSingle, floorSingle],
];
process.stdout.write("\nRelay CPU per request (Node, V8; upstream and bindings answer at once)\n");
for (const [name, perRequest, perEvent, budget] of [...rows, ...floorRows]) {
  const limit = budget ? `  budget ${budget} µs/request` : "";
  process.stdout.write(
    `  ${name.padEnd(28)} ${perRequest.toFixed(0).padStart(6)} µs/request  ${perEvent.toFixed(1).padStart(7)} µs/event${limit}\n`,
  );
}
const over = rows.filter(([, perRequest, , budget]) => perRequest > budget);
if (over.length) {
  process.stderr.write(`over budget: ${over.map(([n]) => n).join(", ")}\n`);
  process.exit(1);
}
