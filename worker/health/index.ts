import { Hono } from "hono";
import catalogue from "../../relay.config.ts";
import { relayConfig, siteKey } from "../config.ts";
import { deliveryStats } from "../delivery/stats.ts";
import type { AppEnv } from "../env.ts";

/** `GET /healthz`: liveness, the settings an operator checks first, and delivery signals; never a secret. */
export const health = new Hono<AppEnv>().get("/healthz", (c) => {
  const config = relayConfig(c.env);
  return c.json({
    status: "ok",
    upstream: new URL(config.base).host,
    // Which sites have their key set (names of secrets only, never values).
    sites: Object.fromEntries(config.sites.map((s) => [s.name, { key_configured: Boolean(siteKey(c.env, s.name).key) }])),
    identity: config.identitySecret ? "signed" : "open",
    ...(config.identitySecret ? { identity_field: config.identityField } : {}),
    geo_mode: config.geoMode,
    delivery: config.delivery,
    activities: Object.keys(catalogue.activities).length,
    // Per-isolate counters (see delivery/stats.ts): cheap hints of upstream trouble, not the queue's depth.
    queue: { ...deliveryStats },
  });
});
