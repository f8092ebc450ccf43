import { createMiddleware } from "hono/factory";
import type { AppEnv } from "./env.ts";

/**
 * One structured JSON line per request: request id, origin, outcome, counts, upstream status
 * and time. Built only from values the handlers chose to record, so a key, a token or a raw
 * email cannot reach it by accident.
 */
export const requestLog = createMiddleware<AppEnv>(async (c, next) => {
  const started = Date.now();
  c.set("log", {});
  await next();
  const status = c.res.status;
  const outcome = c.get("outcome") ?? (status < 400 ? "ok" : "rejected");
  const log = c.get("log");
  const site = c.get("site")?.name ?? null;
  console.log(
    JSON.stringify({
      request_id: c.get("requestId"),
      method: c.req.method,
      path: c.req.path.slice(0, 200),
      // Any client can send any Origin: kept short.
      origin: c.req.header("origin")?.slice(0, 100) ?? null,
      site,
      status,
      outcome,
      ...log,
      ...(c.get("errorName") ? { error: c.get("errorName") } : {}),
      ms: Date.now() - started,
    }),
  );
  // One data point per activities request: counters per outcome and reason, queryable with SQL
  // (`SELECT blob1 AS outcome, SUM(_sample_interval) … GROUP BY outcome`).
  if (c.req.method === "POST")
    c.env.RELAY_EVENTS?.writeDataPoint({
      indexes: [site ?? "none"],
      blobs: [outcome, log.reason ?? "", String(status)],
      doubles: [log.activities ?? 0, log.forwarded ?? 0, log.queued ?? 0],
    });
});
