import catalogue from "../relay.config.ts";
import { REGION_BASES } from "../shared/regions.ts";
import type { RelayEnv } from "./env.ts";
import { type OriginMatcher, originMatcher } from "./origins.ts";
import { ConfigError, parseVars, type Vars } from "./vars.ts";

export { REGION_BASES } from "../shared/regions.ts";

export type GeoMode = Vars["geoMode"];

/** A site the relay serves: its origins, the secret that holds its Ortto key, and what it may send. */
export interface RelaySite {
  name: string;
  matches: OriginMatcher;
  keySecret: string;
  /** The activities this site may send; undefined = the whole catalogue. */
  activities?: ReadonlySet<string>;
}

/** The vars (worker/vars.ts) and what the relay makes of them and of its secrets. */
export interface RelayConfig extends Vars {
  /** Upstream base URL, without a trailing slash. */
  base: string;
  /** Catalogue sites first, then the default site (ALLOWED_ORIGINS with ORTTO_API_KEY). */
  sites: RelaySite[];
  /** Set when identities must be signed (IDENTITY_SECRET); open mode otherwise. */
  identitySecret: string | undefined;
  /** Bearer tokens of trusted senders (SERVER_TOKEN, comma-separated for rotation). */
  serverTokens: string[];
}

export const DEFAULT_SITE = "default";
const cache = new WeakMap<object, RelayConfig | ConfigError>();

/**
 * The relay's settings, read from its bindings once per isolate (the env object is stable
 * for an isolate's life, so origin lists are parsed once, not per request). A var that is set
 * but not understood throws a ConfigError naming it (worker/vars.ts): the relay serves nothing
 * and delivers nothing with a wrong default.
 */
export function relayConfig(env: RelayEnv): RelayConfig {
  let config = cache.get(env);
  if (!config) {
    try {
      const vars = parseVars({ ...env });
      config = {
        ...vars,
        base: (vars.apiBase ?? REGION_BASES[vars.region]).replace(/\/+$/, ""),
        sites: [
          ...(catalogue.sites ?? []).map((s) => ({
            name: s.name,
            matches: originMatcher(s.origins.join(",")),
            keySecret: s.keySecret,
            activities: s.activities ? new Set(s.activities) : undefined,
          })),
          { name: DEFAULT_SITE, matches: originMatcher(env.ALLOWED_ORIGINS), keySecret: "ORTTO_API_KEY" },
        ],
        identitySecret: env.IDENTITY_SECRET?.trim() || undefined,
        serverTokens: (env.SERVER_TOKEN ?? "")
          .split(",")
          .map((t) => t.trim())
          .filter(Boolean),
      };
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      config = err;
      // Once per isolate: names the vars and what they accept, never their values.
      console.error(JSON.stringify({ event: "config_invalid", problems: err.problems }));
    }
    cache.set(env, config);
  }
  if (config instanceof ConfigError) throw config;
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
