import { createMiddleware } from "hono/factory";
import { afterAnswer } from "./after.ts";
import { relayConfig } from "./config.ts";
import type { AppEnv, RelayEnv, RequestLog } from "./env.ts";
import { sha256Hex } from "./hash.ts";
import { LOGGED_PEOPLE } from "./limits/index.ts";

/**
 * One structured JSON line per request that is not a plain success (all of them with
 * LOG_REQUESTS=all): request id, origin, outcome, counts, upstream status and time; and one
 * Analytics Engine point per POST, success or not. Built only from values the handlers chose to record, so a key, a token or a raw
 * email cannot reach it by accident (contacts are hashed). Written after the answer: the
 * visitor does not wait for the relay's bookkeeping.
 */
export const requestLog = createMiddleware<AppEnv>(async (c, next) => {
  const started = Date.now();
  c.set("log", {});
  await next();
  const status = c.res.status;
  const outcome = c.get("outcome") ?? (status < 400 ? "ok" : "rejected");
  const { contacts, ...log }: RequestLog = c.get("log");
  const site = c.get("site")?.name ?? null;
  const env = c.env;
  const post = c.req.method === "POST";
  // A plain success (forwarded, or any other answer under 300 with nothing to explain) is counted by
  // its Analytics Engine point; its line only with LOG_REQUESTS=all. A line costs CPU (a quarter of
  // a forwarded request's, measured in workerd) and, on Workers Logs, money: not even built unwritten.
  const plain = status < 300 && (outcome === "forwarded" || outcome === "ok") && !log.reason && !log.refused;
  const line =
    !plain || logsAll(env)
      ? {
          request_id: c.get("requestId"),
          method: c.req.method,
          path: c.req.path.slice(0, 200),
          // Any client can send any Origin: kept short.
          origin: c.req.header("origin")?.slice(0, 100) ?? null,
          site,
          status,
          outcome,
          ...(c.get("server") ? { sender: "server" } : {}),
          ...log,
          ...(c.get("errorName") ? { error: c.get("errorName") } : {}),
          ms: Date.now() - started,
        }
      : undefined;
  // One data point per activities request, queryable with SQL (docs/deploy.md, "Watching it"):
  // index1 site; blob1 outcome, blob2 reason, blob3 status, blob4 the refused paths with their
  // activity's index as `*` (so that refusals group by field); double1 activities, double2
  // forwarded, double3 queued. The queue consumer adds `delivered` and `dead_lettered` points.
  const point = () =>
    writePoint(env, {
      indexes: [site ?? "none"],
      blobs: [outcome, log.reason ?? "", String(status), refusedPaths(log.paths)],
      doubles: [log.activities ?? 0, log.forwarded ?? 0, log.queued ?? 0],
    });
  if (!line) {
    // No line to hash and write: the point alone, which the call only queues, needs no work after
    // the answer (`waitUntil` costs more than the call).
    if (post) point();
    return;
  }
  afterAnswer(
    c,
    (async () => {
      // First 12 hex of each contact's SHA-256: enough to follow one person through the logs, never the address itself.
      const people = contacts?.length
        ? await Promise.all(contacts.slice(0, LOGGED_PEOPLE).map((contact) => sha256Hex(contact, 6)))
        : undefined;
      console.log(JSON.stringify(people ? { ...line, people } : line));
      if (post) point();
    })(),
  );
});

/**
 * Writes an Analytics Engine point (the request path's, the queue consumer's). One that cannot be
 * written is logged, never thrown: not the request's failure, nor a queue batch's (thrown before its
 * acks, a batch would reach Ortto again).
 */
export function writePoint(env: RelayEnv, point: AnalyticsEngineDataPoint) {
  try {
    env.RELAY_EVENTS?.writeDataPoint(point);
  } catch (err) {
    console.log(JSON.stringify({ event: "data_point_failed", error: String(err).slice(0, 200) }));
  }
}

/** The refused paths for Analytics Engine: each activity's index as `*`, each path once, within 200 characters. */
const refusedPaths = (paths: string[] | undefined) =>
  paths ? [...new Set(paths.map((p) => p.replace(/^activities\.\d+\./, "activities.*.")))].join(",").slice(0, 200) : "";

/** LOG_REQUESTS=all; with invalid vars (relay.js is served regardless) the default, problems only. */
function logsAll(env: AppEnv["Bindings"]): boolean {
  try {
    return relayConfig(env).logRequests === "all";
  } catch {
    return false;
  }
}
