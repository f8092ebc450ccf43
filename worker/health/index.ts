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
    // The budgets in force: what a stranger can still do in open mode is bounded by these.
    limits: {
      contact_activity_per_day: config.contactActivityLimit,
      people_per_network_per_hour: config.identitySecret ? null : config.peoplePerNetwork,
      requests_per_network_per_minute: 100,
      server_tokens: config.serverTokens.length,
    },
    geo_mode: config.geoMode,
    delivery: config.delivery,
    activities: Object.keys(catalogue.activities).length,
    // Per-isolate counters (see delivery/stats.ts): cheap hints of upstream trouble, not the queue's depth.
    queue: { ...deliveryStats },
  });
});
