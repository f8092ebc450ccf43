/**
 * What the workerd benchmarks share (bench/compare.mjs, bench/ab.mjs): the relay bundled as
 * `wrangler deploy` bundles it, its Miniflare worker with the real bindings of wrangler.toml, the
 * instant upstream, the three workloads and a keep-alive client.
 */
import { execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { placedOrder } from "./workload.mjs";

export const root = fileURLToPath(new URL("..", import.meta.url));
export const CONNECTIONS = 16;
export const SECRET = "bench-identity-secret";
export const SERVER_TOKEN = "bench-server-token";
export const ORIGIN = "https://shop.example";
export const upstream = { ORTTO_API_BASE: "http://ortto.bench", ORTTO_API_KEY: "bench-key" };
export const { workerOptions } = unstable_getMiniflareWorkerOptions(join(root, "wrangler.toml"));

/** How a compared worker reaches the instant upstream, and how the bench reaches it. */
export const inFrontOfOrtto = { outboundService: "ortto", unsafeDirectSockets: [{ port: 0 }] };

/** The relay of the tree at `dir` exactly as deployed: `wrangler deploy --dry-run` bundles (and minifies) it. */
export function bundleRelay(dir = root) {
  const out = mkdtempSync(join(tmpdir(), "relay-bench-"));
  try {
    execFileSync(join(root, "node_modules", ".bin", "wrangler"), ["deploy", "--dry-run", "--outdir", out], {
      cwd: dir,
      stdio: "pipe",
      env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
    });
    return readFileSync(join(out, "index.js"), "utf8");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** A Miniflare worker of the relay's bundle `script`, with wrangler.toml's bindings, in front of the instant upstream. */
export const relayWorker = (name, script, extra = {}) => ({
  ...workerOptions,
  ...extra,
  name,
  modules: [{ type: "ESModule", path: "index.js", contents: script }],
  bindings: {
    ...workerOptions.bindings,
    ...upstream,
    ALLOWED_ORIGINS: ORIGIN,
    IDENTITY_SECRET: SECRET,
    SERVER_TOKEN,
    // The instant upstream has no request budget, unlike Ortto (10 a second): with the default, the
    // relay would rightly coalesce this load through the queue (test/budget/ measures that).
    ORTTO_MAX_RPS: "1000000",
  },
  ...inFrontOfOrtto,
});

/** A worker of bench/<file>; `options` (bindings, the upstream) as the worker needs them. */
export const benchWorker = (name, file, options = {}) => ({
  name,
  modules: [{ type: "ESModule", path: file, contents: readFileSync(join(root, "bench", file), "utf8") }],
  compatibilityDate: workerOptions.compatibilityDate,
  ...options,
});

/** The upstream every worker reaches (Miniflare's outboundService): bench/instant-ortto.js. */
export const orttoWorker = () => benchWorker("ortto", "instant-ortto.js");

/** The relay's log lines are produced (their cost is measured) but not printed. */
export function quiet(stdout, stderr) {
  stdout.resume();
  stderr.resume();
}

/**
 * The three workloads; each call makes the next request.
 * - `single`: one visitor's event as the snippet sends it: signed, from a browser, one of 2,000
 *   visitors (few enough that each comes back, so the per-contact limit does real work; many
 *   enough that none nears 50 events a day in a run), each request from its own address.
 * - `known`: a server's full batch, 100 activities of 100 people the relay has seen before, with
 *   the server token: 20 batches of people in turn, each person coming back 45 times (Ortto's
 *   limit is 50 events per activity per contact a day), then the next 2,000 people.
 * - `fresh`: a server's full batch, 100 activities of 100 people never seen before (new contacts
 *   in every request, as a busy site's queue sends them).
 */
export function workloads() {
  const visitors = Array.from({ length: 2000 }, (_, i) => {
    const email = `visitor${i}@example.com`;
    return { email, token: createHmac("sha256", SECRET).update(email).digest("hex") };
  });
  const activity = (email, i) => placedOrder(email, `bench-${i}-${Math.random().toString(36).slice(2)}`);
  const server = { Authorization: `Bearer ${SERVER_TOKEN}`, "Content-Type": "application/json", "CF-Connecting-IP": "203.0.113.9" };
  const batchOf = (person) => ({
    headers: server,
    body: JSON.stringify({ activities: Array.from({ length: 100 }, (_, i) => activity(person(i), i)) }),
  });
  let sent = 0;
  let batches = 0;
  let people = 0;
  return {
    single: () => {
      const n = sent++;
      const v = visitors[n % visitors.length];
      return {
        headers: {
          Origin: ORIGIN,
          "Content-Type": "text/plain",
          "CF-Connecting-IP": `198.18.${(n >> 8) & 255}.${n & 255}`,
          "User-Agent": "Mozilla/5.0 (bench)",
        },
        body: JSON.stringify({ identity_token: v.token, activities: [activity(v.email, n)] }),
      };
    },
    known: () => {
      const n = batches++;
      const generation = Math.floor(n / (20 * 45));
      return batchOf((i) => `known${generation}-${(n % 20) * 100 + i}@example.com`);
    },
    fresh: () => batchOf(() => `person${people++}@example.com`),
  };
}

/** A keep-alive client of CONNECTIONS sockets: `post` answers the status and the time taken, in ms (status 0: no answer). */
export function client() {
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const post = (url, { headers, body }) =>
    new Promise((resolve) => {
      const started = performance.now();
      const req = request(
        new URL("/v1/activities/create", url),
        { method: "POST", agent, headers: { ...headers, "Content-Length": Buffer.byteLength(body) } },
        (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode, ms: performance.now() - started }));
        },
      );
      req.on("error", () => resolve({ status: 0, ms: performance.now() - started }));
      req.end(body);
    });
  return { post, close: () => agent.destroy() };
}

/**
 * CPU this run's own workerd has used so far, in µs (utime + stime, clock ticks of 10 ms): Miniflare
 * starts it as a child of this process, so not another run's on the same machine. Every worker of
 * the run shares it. Call once Miniflare is ready.
 */
export function workerdCpu() {
  const workerd = execFileSync("pgrep", ["-P", String(process.pid), "workerd"])
    .toString()
    .trim()
    .split("\n")
    .at(-1);
  return () => {
    const fields = readFileSync(`/proc/${workerd}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  };
}
