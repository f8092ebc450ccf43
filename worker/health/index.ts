import { Hono } from "hono";
import catalogue from "../../relay.config.ts";
import { pacerOf } from "../budget/binding.ts";
import { isolateBudget } from "../budget/gate.ts";
import type { PacerStats } from "../budget/pacer.ts";
import { relayConfig, siteKey } from "../config.ts";
import { deliveryStats } from "../delivery/stats.ts";
import type { AppEnv } from "../env.ts";

/** `GET /healthz`: liveness, the settings an operator checks first, and delivery signals; never a secret. */
export const health = new Hono<AppEnv>().get("/healthz", async (c) => {
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
    // The account's request budget: the pacer's ledger (every sender) and this isolate's own signals.
    budget: {
      max_rps: config.maxRps,
      account: await accountBudget(c.env),
      isolate: isolateBudget(),
    },
  });
});

/** The pacer's view (one round trip; /healthz is not on any page's path), or why it is missing. */
async function accountBudget(env: AppEnv["Bindings"]): Promise<PacerStats | { error: string }> {
  const pacer = pacerOf(env);
  if (!pacer) return { error: "no UPSTREAM_PACER binding" };
  const timeout = new Promise<{ error: string }>((resolve) =>
    setTimeout(() => resolve({ error: "the pacer did not answer within 2 s" }), 2000),
  );
  return Promise.race([pacer.stats().catch(() => ({ error: "the pacer could not be reached" })), timeout]);
}
