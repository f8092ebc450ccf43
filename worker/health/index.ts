import { Hono } from "hono";
import catalogue from "../../relay.config.ts";
import { relayConfig } from "../config.ts";
import type { AppEnv } from "../env.ts";

/** `GET /healthz`: liveness and the settings an operator checks first; never a secret. */
export const health = new Hono<AppEnv>().get("/healthz", (c) => {
  const config = relayConfig(c.env);
  return c.json({
    status: "ok",
    upstream: new URL(config.base).host,
    key_configured: Boolean(config.apiKey),
    geo_mode: config.geoMode,
    activities: Object.keys(catalogue.activities).length,
  });
});
