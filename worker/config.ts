import catalogue from "../relay.config.ts";
import type { RelayEnv } from "./env.ts";
import { SIGNABLE_KINDS, type SignableKind } from "./identity.ts";
import { type OriginMatcher, originMatcher } from "./origins.ts";

/** Ortto's API host per instance region (Ortto's docs: "Australia or Europe will need to use specific service endpoints"). */
export const REGION_BASES = {
  us: "https://api.ap3api.com",
  au: "https://api.au.ap3api.com",
  eu: "https://api.eu.ap3api.com",
} as const;

export type GeoMode = "ip" | "edge" | "off";

/** A site the relay serves: its origins, the secret that holds its Ortto key, and what it may send. */
export interface RelaySite {
  name: string;
  matches: OriginMatcher;
  keySecret: string;
  /** The activities this site may send; undefined = the whole catalogue. */
  activities?: ReadonlySet<string>;
}

export interface RelayConfig {
  /** Upstream base URL, without a trailing slash. */
  base: string;
  /** Catalogue sites first, then the default site (ALLOWED_ORIGINS with ORTTO_API_KEY). */
  sites: RelaySite[];
  geoMode: GeoMode;
  timeoutMs: number;
  /** `inline`: try Ortto first and queue on failure; `queue`: always queue. */
  delivery: "inline" | "queue";
  /** Ortto's 50 events per activity per contact per 24 h, or lower. */
  contactActivityLimit: number;
  /** Set when identities must be signed (IDENTITY_SECRET); open mode otherwise. */
  identitySecret: string | undefined;
  /** Bearer tokens of trusted senders (SERVER_TOKEN, comma-separated for rotation). */
  serverTokens: string[];
  /** Distinct people a client network may name per hour in open mode (PEOPLE_PER_NETWORK). */
  peoplePerNetwork: number;
  /** The one kind of identifier a signed token names (IDENTITY_FIELD): `str::email` by default. */
  identityField: SignableKind;
  /** The account's Ortto request budget, requests per second (ORTTO_MAX_RPS; Professional 10, Business 30). */
  maxRps: number;
  /** LOG_REQUESTS: `problems` (default) logs every request but a plain success (each still has its Analytics Engine point); `all` logs every one. */
  logRequests: "all" | "problems";
}

export const DEFAULT_SITE = "default";
const cache = new WeakMap<object, RelayConfig>();

function int(value: string | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number.parseInt(value ?? "", 10);
  return Number.isFinite(n) && n > 0 ? Math.min(n, max) : fallback;
}

/**
 * The relay's settings, read from its bindings once per isolate (the env object is stable
 * for an isolate's life, so origin lists are parsed once, not per request). Unknown values
 * fall back to the safe default rather than failing requests.
 */
export function relayConfig(env: RelayEnv): RelayConfig {
  let config = cache.get(env);
  if (!config) {
    const region = (env.ORTTO_REGION ?? "us").trim().toLowerCase();
    const geo = (env.GEO_MODE ?? "ip").trim().toLowerCase();
    config = {
      base: (env.ORTTO_API_BASE?.trim() || REGION_BASES[region as keyof typeof REGION_BASES] || REGION_BASES.us).replace(/\/+$/, ""),
      sites: [
        ...(catalogue.sites ?? []).map((s) => ({
          name: s.name,
          matches: originMatcher(s.origins.join(",")),
          keySecret: s.keySecret,
          activities: s.activities ? new Set(s.activities) : undefined,
        })),
        { name: DEFAULT_SITE, matches: originMatcher(env.ALLOWED_ORIGINS), keySecret: "ORTTO_API_KEY" },
      ],
      geoMode: geo === "edge" || geo === "off" ? geo : "ip",
      timeoutMs: int(env.UPSTREAM_TIMEOUT_MS, 5000),
      delivery: env.DELIVERY?.trim().toLowerCase() === "queue" ? "queue" : "inline",
      contactActivityLimit: int(env.CONTACT_ACTIVITY_LIMIT, 50, 50),
      identitySecret: env.IDENTITY_SECRET?.trim() || undefined,
      serverTokens: (env.SERVER_TOKEN ?? "")
        .split(",")
        .map((t) => t.trim())
        .filter(Boolean),
      peoplePerNetwork: int(env.PEOPLE_PER_NETWORK, 50),
      identityField: SIGNABLE_KINDS.find((k) => k === env.IDENTITY_FIELD?.trim()) ?? "str::email",
      maxRps: int((env as { ORTTO_MAX_RPS?: string }).ORTTO_MAX_RPS, 10),
      logRequests: env.LOG_REQUESTS?.trim().toLowerCase() === "all" ? "all" : "problems",
    };
    cache.set(env, config);
  }
  return config;
}

/** The site an origin belongs to, or undefined when the relay does not serve it. */
export function siteFor(config: RelayConfig, origin: string | undefined): RelaySite | undefined {
  return origin ? config.sites.find((s) => s.matches(origin)) : undefined;
}

/** A site's Ortto key, from the secret it names. Read here and in the queue consumer, nowhere else. */
export function siteKey(env: RelayEnv, siteName: string | undefined): { secret: string; key: string | undefined } {
  const site = relayConfig(env).sites.find((s) => s.name === (siteName ?? DEFAULT_SITE));
  // A site that no longer exists (renamed or removed while its messages waited) has no key:
  // its messages wait rather than travel under another site's key.
  if (!site) return { secret: `the key of site ${siteName}`, key: undefined };
  const secret = site.keySecret;
  const value = (env as unknown as Record<string, unknown>)[secret];
  return { secret, key: typeof value === "string" && value.trim() ? value.trim() : undefined };
}
