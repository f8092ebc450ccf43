/**
 * The relay: composes the routes and the middleware every request passes through.
 * The path of one activity is in ARCHITECTURE.md.
 */
import { type Context, Hono } from "hono";
import { cors } from "hono/cors";
import { requestId } from "hono/request-id";
import { getPath } from "hono/utils/url";
import { activities } from "./activities/index.ts";
import { relayConfig, siteFor } from "./config.ts";
import { consumeQueue } from "./delivery/consumer.ts";
import type { AppEnv } from "./env.ts";
import { errorResponse, onError, RelayError } from "./errors.ts";
import { health } from "./health/index.ts";
import { type Isolate, newIsolate } from "./isolate.ts";
import { requestLog } from "./log.ts";
import { snippet } from "./snippet/index.ts";
import { ConfigError } from "./vars.ts";

/** The relay's endpoints, matched at the end of the path: whatever comes before is the route's prefix. */
const ENDPOINT = /\/(?:relay\.js|healthz|v1\/activities\/create)$/;

/**
 * The path the routes see: the request's, without the prefix a Cloudflare route put before an
 * endpoint (`shop.example/r/*` → `/r/relay.js` is `/relay.js`). Derived rather than configured, so
 * that one deployment serves its workers.dev host and any number of first-party routes, and no
 * BASE_PATH has to be kept in step with the routes; the route itself decides what reaches the worker.
 */
function relayPath(request: Request): string {
  const path = getPath(request);
  const m = ENDPOINT.exec(path);
  return m ? path.slice(m.index) : path;
}

// CORS headers only for allowed origins (never `*`); a text/plain POST needs no preflight,
// but servers and JSON posts do. Hono's `cors` answers the preflights.
const allowedOrigin = (origin: string | undefined, c: Context<AppEnv>) => (siteFor(relayConfig(c.env), origin) ? origin : null);
// Date: the snippet learns the relay's clock from it, to correct a device's wrong one.
const EXPOSED = ["X-Request-Id", "Retry-After", "X-Relay-Outcome", "Date"];
const preflight = cors({
  origin: allowedOrigin,
  allowMethods: ["POST", "OPTIONS"],
  allowHeaders: ["Content-Type"],
  exposeHeaders: EXPOSED,
  maxAge: 86400,
});
const exposed = EXPOSED.join(",");

/** The relay's app, over one isolate's memory (its counts, its view of the budget, its delivery signals). */
function relayApp(isolate: Isolate) {
  const app = new Hono<AppEnv>({ getPath: relayPath });

  app.use(requestId());
  app.use(requestLog);
  // The isolate's memory, then the vars, checked on the first request of an isolate: a wrong one
  // answers 503 naming it (and what it accepts) to every request, rather than forwarding with a
  // default nobody chose. Except relay.js, which reads none: a page that loads it keeps its events
  // and sends them again (a 503 is retried) once the vars are fixed; without it, the calls the
  // loader line queued die with the page.
  app.use(async (c, next) => {
    c.set("limits", isolate.limits);
    c.set("budget", isolate.budget);
    c.set("isolate", isolate);
    if (c.req.path === "/relay.js") return next();
    try {
      relayConfig(c.env);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      throw new RelayError(503, err.message, err.problems, { reason: "config" });
    }
    await next();
  });
  /**
   * A POST's CORS headers, set before the handler so that they go into the one Response it builds:
   * Hono's `cors` sets them on a placeholder Response, which Hono then copies into the handler's and
   * again for `Vary` (three Responses a request, ~7% of a forwarded activity's throughput in
   * workerd). Then the relay's clock, as it answers (Cloudflare's edge sets Date too; wrangler dev
   * does not), on the finished Response's own headers rather than with `c.header()`, which would copy
   * it once more.
   */
  app.use("/v1/*", async (c, next) => {
    if (c.req.method === "OPTIONS") return preflight(c, next);
    const origin = allowedOrigin(c.req.header("origin"), c);
    if (origin) {
      c.header("Access-Control-Allow-Origin", origin);
      c.header("Access-Control-Expose-Headers", exposed);
    }
    c.header("Vary", "Origin");
    await next();
    const date = new Date().toUTCString();
    try {
      c.res.headers.set("Date", date);
    } catch {
      c.header("Date", date); // a Response with immutable headers (one passed through from fetch)
    }
  });

  app.route("/", health);
  app.route("/", snippet);
  app.route("/", activities);

  app.notFound((c) => errorResponse(c, 404, `No route for ${c.req.method} ${c.req.path}`));
  app.onError(onError);
  return app;
}

/**
 * The relay's handlers over one isolate's memory, shared by its requests and its queue batches.
 * The worker is made over this isolate's, once; a test makes another to stand for a new isolate.
 */
export function relay(isolate: Isolate) {
  const app = relayApp(isolate);
  return {
    fetch: app.fetch,
    queue: (batch, env) => consumeQueue(batch, env, isolate),
  } satisfies ExportedHandler<AppEnv["Bindings"]>;
}

export default relay(newIsolate());

export { UpstreamPacer } from "./budget/pacer.ts";
export { LimitLedger } from "./limits/ledger-object.ts";
