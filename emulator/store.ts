/**
 * The emulator's memory: people, stored activities, the raw request log, fault settings and
 * counters. Module-level on purpose: the emulator must be one self-contained worker module
 * (it also runs as an esbuild-bundled auxiliary worker in the relay's tests), so there are no
 * Durable Objects or bindings; state lives as long as the isolate and `reset()` clears it.
 */

import type { ActivityBody, AttributeBody, DisplayType } from "../shared/definitions.ts";

/** A person as Ortto keeps one: its id and the latest value of every person field it was sent. */
export interface Person {
  person_id: string;
  fields: Record<string, unknown>;
  created_at: string;
}

/** One activity as Ortto stored it. */
export interface StoredActivity {
  /** Ortto's id of this activity event (24 hex characters), as answered in `activity_id`. */
  id: string;
  /** The definition it belongs to (`act:cm:logged-in`), as sent in the request's `activity_id`. */
  activity_id: string;
  person_id: string;
  person_status: string;
  /** The person fields this activity carried. */
  fields: Record<string, unknown>;
  /** The attributes Ortto kept: those the definition declares. */
  attributes: Record<string, unknown>;
  /** Attributes the definition does not declare, which Ortto drops without a word. */
  ignored_attributes: string[];
  location?: unknown;
  key?: string;
  /** The event's time: the request's `created`, or when it was received. ISO 8601. */
  created: string;
  received_at: string;
  /** The request's X-Api-Key value, so tests can check that the relay attached its key. */
  api_key: string;
  async: boolean;
}

/** One create request as it arrived, with the status it was answered. */
export interface LoggedRequest {
  received_at: string;
  headers: Record<string, string>;
  body: unknown;
  status: number;
  /** What the emulator answered, so a failed activity's reason can be looked up. */
  response?: unknown;
  /** Why activities answered status "failed" (Ortto's answer does not say). */
  failures?: string[];
}

export interface Faults {
  failRate: number;
  statuses: number[];
  hangMs: number;
  downUntil: number;
  /** The `try-in-seconds` that an injected 429 answers (Ortto's real answers say 10). */
  tryInSeconds: number;
  /** A request carrying an activity with one of these keys always fails (a poison message). */
  failKeys: string[];
  /**
   * The account's request budget, as Ortto enforces it: create requests per calendar second
   * beyond this are answered 429 with `try-in-seconds` (Professional 10, Business 30). 0 = none.
   */
  maxRps: number;
  /** The next this-many create requests fail with `statuses[0]` (one 429, one outage), then none. */
  failNext: number;
  /** Every create request is answered this status, as Ortto answers a revoked or wrong key (401, 403, 404); 0 = none. */
  refuseKey: number;
  /**
   * A 400 for `failKeys` lists `details` one per activity, in order (`invalid` for the refused
   * ones, `ok` for the rest), as some of Ortto's answers do; otherwise it names none.
   */
  detailsPerActivity: boolean;
  seed?: number;
}

export const DEFAULT_FAULTS: Faults = {
  failRate: 0,
  statuses: [500, 503, 429],
  hangMs: 0,
  downUntil: 0,
  tryInSeconds: 10,
  failKeys: [],
  maxRps: 0,
  failNext: 0,
  refuseKey: 0,
  detailsPerActivity: false,
};
/** How many seconds of per-second request counts are kept (ten minutes). */
export const MAX_SECONDS_KEPT = 600;

/** Create requests that arrived in one calendar second, and how many of them the budget refused. */
export interface SecondCount {
  requests: number;
  rate_limited: number;
}
/** The request log keeps the latest requests only, so a long dev session cannot exhaust memory. */
export const MAX_LOGGED_REQUESTS = 200;

/** An activity definition of the account, as `POST /v1/definitions/activity/create` made it. */
export interface StoredDefinition extends ActivityBody {
  activity_field_id: string;
  state: string;
  /** Each attribute with the id Ortto derived from its name and display type. */
  attributes: (AttributeBody & { attribute_field_id: string })[];
}

/** A custom person field of the account, as `/v1/person/custom-field/get` lists it. */
export interface StoredField {
  id: string;
  name: string;
  display_type: DisplayType;
  liquid_name: string;
  values?: string[];
  track_changes: boolean;
}

export const state = {
  /**
   * The account's activity definitions by id: empty, as a new account is, until something (npm
   * start, the tests' setup, `npm run plan -- push`) creates them through the definitions API.
   */
  definitions: new Map<string, StoredDefinition>(),
  /** The account's custom person fields by id. */
  customFields: new Map<string, StoredField>(),
  /** Definitions API requests per calendar second (the budget of `maxRps`, counted apart from create requests). */
  definitionSeconds: new Map<number, number>(),
  people: new Map<string, Person>(),
  /** `str::email:chris@example.com` → person_id, one entry per identifying value seen. */
  identities: new Map<string, string>(),
  activities: [] as StoredActivity[],
  /** `key` + instant of `created` → the stored activity, for Ortto's re-send merging. */
  byKeyAndCreated: new Map<string, StoredActivity>(),
  requests: [] as LoggedRequest[],
  requestCount: 0,
  duplicates: 0,
  /** Create requests answered 429 because they were over `maxRps`. */
  rateLimited: 0,
  /** Epoch second → create requests that arrived in it: the upstream rate a relay really spent. */
  perSecond: new Map<number, SecondCount>(),
  faults: { ...DEFAULT_FAULTS } as Faults,
  random: Math.random as () => number,
};

/**
 * Forgets the account's traffic (people, activities, requests, faults, counters); with `account`,
 * its definitions and custom fields too, as a brand-new account.
 */
export function reset(account = false): void {
  if (account) {
    state.definitions.clear();
    state.customFields.clear();
  }
  state.definitionSeconds.clear();
  state.people.clear();
  state.identities.clear();
  state.activities = [];
  state.byKeyAndCreated.clear();
  state.requests = [];
  state.requestCount = 0;
  state.duplicates = 0;
  state.rateLimited = 0;
  state.perSecond.clear();
  setFaults({ ...DEFAULT_FAULTS });
}

/** Replaces the fault settings; a seed makes the sequence of failures repeatable. */
export function setFaults(faults: Faults): void {
  state.faults = faults;
  state.random = faults.seed === undefined ? Math.random : mulberry32(faults.seed);
}

/**
 * Counts a create request in its calendar second and says whether the account's budget
 * (`maxRps`) refuses it: every request counts, refused or not, as Ortto counts what it receives.
 */
export function countRequest(now: number): boolean {
  const second = Math.floor(now / 1000);
  let count = state.perSecond.get(second);
  if (!count) {
    count = { requests: 0, rate_limited: 0 };
    state.perSecond.set(second, count);
    for (const old of state.perSecond.keys()) {
      if (old > second - MAX_SECONDS_KEPT) break;
      state.perSecond.delete(old);
    }
  }
  count.requests++;
  const over = state.faults.maxRps > 0 && count.requests > state.faults.maxRps;
  if (over) {
    count.rate_limited++;
    state.rateLimited++;
  }
  return over;
}

export function logRequest(entry: LoggedRequest): void {
  state.requests.push(entry);
  if (state.requests.length > MAX_LOGGED_REQUESTS) state.requests.splice(0, state.requests.length - MAX_LOGGED_REQUESTS);
}

/** A 24-hex-character id, the shape of Ortto's person and activity ids. */
export function orttoId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** mulberry32: a tiny seeded PRNG, enough to make fault injection reproducible. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
