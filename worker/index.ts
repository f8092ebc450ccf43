/**
 * The relay: composes the routes and the middleware every request passes through.
 * The path of one activity is in ARCHITECTURE.md.
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import { requestId } from "hono/request-id";
import { activities } from "./activities/index.ts";
import { relayConfig, siteFor } from "./config.ts";
import { consumeQueue } from "./delivery/consumer.ts";
import type { AppEnv } from "./env.ts";
import { errorResponse, onError } from "./errors.ts";
import { health } from "./health/index.ts";
import { requestLog } from "./log.ts";
import { snippet } from "./snippet/index.ts";

const app = new Hono<AppEnv>();

app.use(requestId());
app.use(requestLog);
// CORS headers only for allowed origins (never `*`); a text/plain POST needs no preflight,
// but servers and JSON posts do.
app.use(
  "/v1/*",
  cors({
    origin: (origin, c) => (siteFor(relayConfig(c.env), origin) ? origin : null),
    allowMethods: ["POST", "OPTIONS"],
    allowHeaders: ["Content-Type"],
    // Date: the snippet learns the relay's clock from it, to correct a device's wrong one.
    exposeHeaders: ["X-Request-Id", "Retry-After", "X-Relay-Outcome", "Date"],
    maxAge: 86400,
  }),
);

// The relay's clock, for the snippet to correct a device's wrong one (Cloudflare's edge sets Date too; wrangler dev does not).
app.use("/v1/*", async (c, next) => {
  await next();
  c.header("Date", new Date().toUTCString());
});

app.route("/", health);
app.route("/", snippet);
app.route("/", activities);

app.notFound((c) => errorResponse(c, 404, `No route for ${c.req.method} ${c.req.path}`));
app.onError(onError);

export default {
  fetch: app.fetch,
  queue: consumeQueue,
} satisfies ExportedHandler<AppEnv["Bindings"]>;

export { UpstreamPacer } from "./budget/pacer.ts";
export { LimitLedger } from "./limits/ledger-object.ts";
export { app };
