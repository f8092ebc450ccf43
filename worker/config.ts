import type { RelayEnv } from "./env.ts";
import { type OriginMatcher, originMatcher } from "./origins.ts";

/** Ortto's API host per instance region (Ortto's docs: "Australia or Europe will need to use specific service endpoints"). */
export const REGION_BASES = {
  us: "https://api.ap3api.com",
  au: "https://api.au.ap3api.com",
  eu: "https://api.eu.ap3api.com",
} as const;

export type GeoMode = "ip" | "edge" | "off";

export interface RelayConfig {
  /** Upstream base URL, without a trailing slash. */
  base: string;
  apiKey: string | undefined;
  isAllowedOrigin: OriginMatcher;
  geoMode: GeoMode;
  timeoutMs: number;
  /** `inline`: try Ortto first and queue on failure; `queue`: always queue. */
  delivery: "inline" | "queue";
}

const cache = new WeakMap<object, RelayConfig>();

/**
 * The relay's settings, read from its bindings once per isolate (the env object is stable
 * for an isolate's life, so the origin list is parsed once, not per request). Unknown values
 * fall back to the safe default rather than failing requests.
 */
export function relayConfig(env: RelayEnv): RelayConfig {
  let config = cache.get(env);
  if (!config) {
    const region = (env.ORTTO_REGION ?? "us").trim().toLowerCase();
    const geo = (env.GEO_MODE ?? "ip").trim().toLowerCase();
    const timeout = Number.parseInt(env.UPSTREAM_TIMEOUT_MS ?? "", 10);
    config = {
      base: (env.ORTTO_API_BASE?.trim() || REGION_BASES[region as keyof typeof REGION_BASES] || REGION_BASES.us).replace(/\/+$/, ""),
      apiKey: env.ORTTO_API_KEY?.trim() || undefined,
      isAllowedOrigin: originMatcher(env.ALLOWED_ORIGINS),
      geoMode: geo === "edge" || geo === "off" ? geo : "ip",
      timeoutMs: Number.isFinite(timeout) && timeout > 0 ? timeout : 5000,
      delivery: env.DELIVERY?.trim().toLowerCase() === "queue" ? "queue" : "inline",
    };
    cache.set(env, config);
  }
  return config;
}
