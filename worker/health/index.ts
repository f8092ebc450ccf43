import { Hono } from "hono";
import { version } from "../../package.json";
import catalogue from "../../relay.config.ts";
import { ipRateLimit, trustedSender } from "../abuse.ts";
import { KEY_REFUSED_REASON } from "../budget/gate.ts";
import { relayConfig, siteKey } from "../config.ts";
import type { AppEnv } from "../env.ts";

/**
 * `GET /healthz`: answered from this isolate's memory (no Durable Object: a probe must not cost
 * the account's pacer anything), within the per-network rate limit as the API is. Anyone learns
 * that the relay is up and its version; the settings and delivery signals need the server token
 * (`Authorization: Bearer <SERVER_TOKEN>`). Never a secret either way.
 */
export const health = new Hono<AppEnv>().get("/healthz", trustedSender, ipRateLimit, (c) => {
  if (!c.get("server")) return c.json({ status: "ok", version });
  const config = relayConfig(c.env);
  const circuits = c.get("budget").circuits();
  return c.json({
    status: "ok",
    version,
    upstream: new URL(config.base).host,
    // Which sites have their key set (names of secrets only, never values), and whether Ortto takes it.
    sites: Object.fromEntries(
      config.sites.map((s) => [
        s.name,
        { key_configured: Boolean(siteKey(c.env, s.name).key), ...(circuits[s.name] ? { key_refused: KEY_REFUSED_REASON } : {}) },
      ]),
    ),
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
    queue: { ...c.get("isolate").delivery },
    // Sites whose key Ortto refuses (401/403/404): their activities wait in the queue behind a probing circuit.
    circuits,
    // This isolate's view of the account's request budget (the pacer's, as of its last sync).
    budget: { max_rps: config.maxRps, isolate: c.get("budget").stats() },
  });
});
