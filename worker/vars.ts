/**
 * The relay's vars, checked once per isolate: a var that is set but not understood is a start-up
 * error naming the var and what it accepts, never a silent default (`ORTTO_REGION=europe` must not
 * send an EU customer's visitors to the US host). Absent optional vars take their documented
 * default. Pure, so that `npm test` checks the shipped wrangler.toml's every environment in Node.
 */
import { SIGNABLE_KINDS, type SignableKind } from "./identity.ts";
import { LEDGER_TIMEOUT_MS } from "./limits/counts.ts";

export const REGIONS = ["us", "au", "eu"] as const;
const GEO_MODES = ["ip", "edge", "off"] as const;
const DELIVERIES = ["inline", "queue"] as const;
const LOG_LEVELS = ["problems", "all"] as const;
const BOOLEANS = ["true", "false"] as const;

/** The vars as they come from the bindings (strings, or absent). */
export type RawVars = Partial<Record<string, unknown>>;

/** A var the relay cannot use: `path` names it, `message` says what it accepts (never its value: it might be a key pasted in the wrong place). */
export interface VarProblem {
  path: string;
  message: string;
}

/** The relay's configuration is wrong: it refuses to serve or deliver until it is fixed. */
export class ConfigError extends Error {
  constructor(readonly problems: VarProblem[]) {
    super(`The relay's configuration is invalid: ${problems.map((p) => `${p.path} ${p.message}`).join("; ")}`);
    this.name = "ConfigError";
  }
}

export interface Vars {
  region: (typeof REGIONS)[number];
  apiBase: string | undefined;
  geoMode: (typeof GEO_MODES)[number];
  delivery: (typeof DELIVERIES)[number];
  logRequests: (typeof LOG_LEVELS)[number];
  identityField: SignableKind;
  allowHeadless: boolean;
  timeoutMs: number;
  pacerTimeoutMs: number;
  ledgerTimeoutMs: number;
  retryBaseSeconds: number;
  retryMaxSeconds: number;
  maxRps: number;
  contactActivityLimit: number;
  peoplePerNetwork: number;
  /** DEAD_LETTER_QUEUE: the name of the queue wrangler.toml dead-letters into; a batch from it is a replay. */
  deadLetterQueue: string;
}

const ORIGIN = /^https?:\/\/(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/;

/** A URL the relay can put `/v1/activities/create` after: http(s), a host, no space, query or fragment. */
function isBaseUrl(value: string): boolean {
  if (/[\s?#]/.test(value)) return false;
  try {
    const url = new URL(value);
    return (url.protocol === "https:" || url.protocol === "http:") && url.host !== "";
  } catch {
    return false;
  }
}

/** Reads and checks every var; throws a ConfigError listing every problem at once. */
export function parseVars(env: RawVars): Vars {
  const problems: VarProblem[] = [];
  const text = (name: string) => {
    const v = env[name];
    if (v === undefined || v === null) return undefined;
    // An unquoted number or boolean in wrangler.toml reaches the worker as a JSON value, not a string.
    if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") {
      problems.push({ path: name, message: "must be a string (a quoted value in wrangler.toml), not a table or an array" });
      return undefined;
    }
    return String(v).trim() || undefined;
  };
  /** Set, but to nothing: a CI variable never defined (`--var ORTTO_REGION:`) must not pass for "use the default". */
  const empty = (name: string, accepts: string, fallback: unknown) => {
    const v = env[name];
    if (typeof v === "string" && v.trim() === "")
      problems.push({ path: name, message: `${accepts} (it is set but empty: remove it for the default, ${fallback})` });
  };
  function oneOf<T extends string>(name: string, accepted: readonly T[], fallback: T, lower = true): T {
    const v = text(name);
    if (v === undefined) {
      empty(name, `must be one of ${accepted.join(", ")}`, fallback);
      return fallback;
    }
    const found = accepted.find((a) => a === (lower ? v.toLowerCase() : v));
    if (!found) problems.push({ path: name, message: `must be one of ${accepted.join(", ")}` });
    return found ?? fallback;
  }
  function whole(name: string, fallback: number, min: number, max: number): number {
    const v = text(name);
    if (v === undefined) {
      empty(name, `must be a whole number from ${min} to ${max}`, fallback);
      return fallback;
    }
    const n = /^\d{1,15}$/.test(v) ? Number(v) : Number.NaN;
    if (!(n >= min && n <= max)) problems.push({ path: name, message: `must be a whole number from ${min} to ${max}` });
    return n;
  }
  const apiBase = text("ORTTO_API_BASE");
  if (apiBase !== undefined && !isBaseUrl(apiBase)) {
    problems.push({ path: "ORTTO_API_BASE", message: "must be an http(s) URL such as https://api.ap3api.com" });
  }
  for (const entry of (text("ALLOWED_ORIGINS") ?? "").split(",")) {
    const e = entry.trim().replace(/\/+$/, "").toLowerCase();
    if (e && !ORIGIN.test(e)) {
      problems.push({
        path: "ALLOWED_ORIGINS",
        message: "must list origins such as https://shop.example or https://*.shop.example, comma-separated (never *)",
      });
      break;
    }
    if (/^https:\/\/.*:443$|^http:\/\/.*:80$/.test(e)) {
      problems.push({
        path: "ALLOWED_ORIGINS",
        message: "must not name the scheme's default port (:443 for https, :80 for http): an Origin never does",
      });
      break;
    }
  }
  const deadLetterQueue = text("DEAD_LETTER_QUEUE");
  if (!deadLetterQueue)
    problems.push({ path: "DEAD_LETTER_QUEUE", message: "must name the delivery queue's dead_letter_queue (wrangler.toml)" });
  const vars: Vars = {
    region: oneOf("ORTTO_REGION", REGIONS, "us"),
    apiBase,
    geoMode: oneOf("GEO_MODE", GEO_MODES, "ip"),
    delivery: oneOf("DELIVERY", DELIVERIES, "inline"),
    logRequests: oneOf("LOG_REQUESTS", LOG_LEVELS, "problems"),
    identityField: oneOf("IDENTITY_FIELD", SIGNABLE_KINDS, "str::email", false),
    allowHeadless: oneOf("ALLOW_HEADLESS", BOOLEANS, "false") === "true",
    timeoutMs: whole("UPSTREAM_TIMEOUT_MS", 5000, 1, 60_000),
    // A page's request waits this long for the pacer's permit (a fresh isolate, a 4xx window open), then queues.
    pacerTimeoutMs: whole("PACER_TIMEOUT_MS", 500, 1, 60_000),
    // A request waits this long a round for the limits' ledger, then decides on what its isolate knows.
    ledgerTimeoutMs: whole("LEDGER_TIMEOUT_MS", LEDGER_TIMEOUT_MS, 1, 60_000),
    // A queue message's delay is at most 12 hours.
    retryBaseSeconds: whole("RETRY_BASE_SECONDS", 5, 1, 43_200),
    retryMaxSeconds: whole("RETRY_MAX_SECONDS", 3600, 1, 43_200),
    maxRps: whole("ORTTO_MAX_RPS", 10, 1, 1_000_000),
    // Ortto's own limit is 50 events per activity per contact per 24 h: more would only be refused there.
    contactActivityLimit: whole("CONTACT_ACTIVITY_LIMIT", 50, 1, 50),
    peoplePerNetwork: whole("PEOPLE_PER_NETWORK", 50, 1, 1_000_000),
    deadLetterQueue: deadLetterQueue ?? "",
  };
  if (problems.length) throw new ConfigError(problems);
  return vars;
}
