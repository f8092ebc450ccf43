/**
 * The relay's bindings. Vars are declared in wrangler.toml and typed by `npm run cf-typegen`
 * (worker/worker-configuration.d.ts); secrets and optional vars are declared here.
 *
 * - `ORTTO_REGION` — `us` (default), `au` or `eu`: which Ortto API host to use.
 * - `ALLOWED_ORIGINS` — comma-separated origins that may post (`https://shop.example`,
 *   `https://*.shop.example`); a request from any other origin is refused with 403.
 * - `GEO_MODE` — `ip` (send the client IP for Ortto to geolocate), `edge` (send the city and
 *   country Cloudflare derived, so the IP never leaves the edge) or `off`.
 * - `UPSTREAM_TIMEOUT_MS` — how long to wait for Ortto before giving up (default 5000).
 * - `DEAD_LETTER_QUEUE` — the environment's dead-letter queue (its consumer's `dead_letter_queue`).
 *
 * Every var is checked at start by `worker/vars.ts`: a value it does not know is an error naming it.
 */
declare global {
  namespace Cloudflare {
    interface Env {
      /** Secret: the private key of the Ortto Custom API data source (`wrangler secret put ORTTO_API_KEY`). */
      ORTTO_API_KEY?: string;
      /** Optional: an upstream base URL that wins over the region (the local emulator, tests). */
      ORTTO_API_BASE?: string;
      /** Secret: when set, identities must be signed: hex(HMAC-SHA256(IDENTITY_SECRET, email)). Open mode when unset. */
      IDENTITY_SECRET?: string;
      /** Optional: the one identifier kind signed tokens name: `str::email` (default), `str::ei` or `person_id`. */
      IDENTITY_FIELD?: string;
      /** Optional, for test environments: `true` lets headless browsers (HeadlessChrome) through the crawler filter. */
      ALLOW_HEADLESS?: string;
      /** Optional: fewer than Ortto's 50 events per activity per contact per 24 hours. */
      CONTACT_ACTIVITY_LIMIT?: string;
      /** Secret: bearer tokens of trusted server senders, comma-separated (two during a rotation). */
      SERVER_TOKEN?: string;
      /** Optional: distinct people one client network may name per hour in open mode (default 50). */
      PEOPLE_PER_NETWORK?: string;
      /** Optional: how long a page's request waits for the pacer's permit before queueing, in ms (default 500). */
      PACER_TIMEOUT_MS?: string;
      /** Optional: how long a request waits a round for the limits' ledger before deciding on what its isolate knows, in ms (default 500). */
      LEDGER_TIMEOUT_MS?: string;
      /** Optional: `problems` (default) writes a log line for every request but a plain success; `all`, for every request. */
      LOG_REQUESTS?: string;
    }
  }
}

import type { IsolateBudget } from "./budget/gate.ts";
import type { RelaySite } from "./config.ts";
import type { Isolate } from "./isolate.ts";
import type { LimitCounts } from "./limits/counts.ts";

export type RelayEnv = Cloudflare.Env;

/** Per-request values that handlers record for the request's log line. */
export interface RequestLog {
  activities?: number;
  forwarded?: number;
  upstream_status?: number;
  upstream_ms?: number;
  queued?: number;
  /** Activities refused on their own (the rest went on): the answer names them, and the log line counts them. */
  refused?: number;
  /** The request's contacts (normalised identifiers): memory only; the log line shows the first 12 hex of their SHA-256, never a raw address. */
  contacts?: string[];
  reason?: string;
  /** The refused fields, as the answer's `details` name them (`activities.0.attributes.accountOwner`): paths, never values. */
  paths?: string[];
}

/** How a request ended, for its log line and Analytics Engine point. */
export type Outcome =
  | "forwarded"
  | "queued"
  | "rejected"
  | "throttled"
  | "bot"
  | "identity_failed"
  | "upstream_error"
  | "error"
  | "dry_run";

/** Hono's typing of this app: bindings, and the variables middleware sets. */
export interface AppEnv {
  Bindings: RelayEnv;
  Variables: {
    requestId: string;
    outcome?: Outcome;
    /** The site the request's origin belongs to. */
    site: RelaySite;
    /** Set when the request carries a valid SERVER_TOKEN: a trusted server, not a page. */
    server?: boolean;
    /** The client network (IPv4 address, or IPv6 /64) every per-IP budget keys on. */
    network: string;
    errorName?: string;
    log: RequestLog;
    /** This isolate's counts toward the limits (worker/isolate.ts). */
    limits: LimitCounts;
    /** This isolate's view of the account's request budget (worker/isolate.ts). */
    budget: IsolateBudget;
    /** This isolate's memory as a whole: its delivery signals, what it has logged once (worker/isolate.ts). */
    isolate: Isolate;
  };
}
