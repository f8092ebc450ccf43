/**
 * This isolate's view of the account's request budget, kept in memory so that the request path
 * never waits on anyone: whether a page batch goes to Ortto inline or straight to the queue is
 * decided from counters here, and the view is refreshed from the pacer (pacer.ts) at most once
 * a second, in `waitUntil`, and from the outcome of every upstream request (`noteUpstream`).
 */
import type { Context } from "hono";
import { relayConfig } from "../config.ts";
import type { AppEnv } from "../env.ts";
import { type BatchNote, pacerOf } from "./binding.ts";
import { inlineGrace, RECENT_429_MS, type SyncAnswer, type SyncReport } from "./ledger.ts";
import type { RefusalAnswer } from "./pacer.ts";
import { type CircuitView, KEY_REFUSED, type Permit, REFUSAL_WINDOW_MS, RefusalWindow } from "./refusals.ts";

/** Page batches a second in this isolate beyond which it coalesces, as a share of ORTTO_MAX_RPS. */
const NEAR_BUDGET = 0.5;
/** How often an isolate with traffic syncs with the pacer. */
const SYNC_MS = 1000;
/** Seconds of upstream counts kept for /healthz. */
const KEPT_SECONDS = 60;

const local = {
  isolate: "",
  /** Inline sends a second the pacer reserved for this isolate, until when. */
  lease: { perSecond: 0, until: 0 },
  pausedUntil: 0,
  shortUntil: 0,
  /** Page batches received: this second, and the second before. */
  arrivals: { second: 0, count: 0, previous: 0 },
  /** Inline sends this second, and how many of them the lease covered. */
  inline: { second: 0, sends: 0, leased: 0 },
  /** Inline sends without a lease, by second, not yet charged at the pacer. */
  unleased: [] as [number, number][],
  /** A 429 not yet reported to the pacer: until when, and how many. */
  pauseReport: { until: 0, count: 0 },
  lastSync: 0,
  /** Whether the pacer has told this isolate the account's 4xx window and refused keys (an admit, a sync or a slot). */
  heard: false,
  /** Epoch second → upstream requests this isolate made, and how many were answered 429. */
  upstream: new Map<number, { requests: number; rate_limited: number }>(),
  rateLimited: 0,
  lastRateLimitedAt: 0,
  inlineDecisions: 0,
  coalesced: 0,
  lastBatch: null as BatchNote | null,
  /** Until when a request Ortto answered 4xx (here or, learnt at sync, anywhere) keeps senders asking the pacer first. */
  refusedUntil: 0,
  /** Sites whose key Ortto refuses (401/403/404): their page batches wait in the queue for the circuit's probe. */
  circuits: new Map<string, { status: number; since: number; nextProbeAt: number }>(),
  /**
   * This isolate's own window of 4xx answers: the cap on its requests when the pacer cannot be
   * asked (no binding, or the Durable Object unreachable), so that it never storms Ortto alone.
   */
  refusals: new RefusalWindow(),
};

/** Marks a permit of this isolate's own window (`admitLocally`), not the pacer's. */
const LOCAL_PERMIT = "local:";

/** A permit from this isolate's own window of 4xx answers, for when the pacer cannot be asked. */
export function admitLocally(ttlMs: number): Permit {
  const answer = local.refusals.admit(Date.now(), ttlMs);
  return "permit" in answer ? { permit: LOCAL_PERMIT + answer.permit } : answer;
}

/** A local permit's request was answered (its 4xx, if any, is counted by noteUpstream): the permit goes back. */
export function settleLocally(permit: string) {
  local.refusals.settle(permit.slice(LOCAL_PERMIT.length), false, Date.now());
}

const isLocalPermit = (permit: string | undefined) => permit?.startsWith(LOCAL_PERMIT) ?? false;

/** What the operator reads in the log line and /healthz when a site's circuit is open. */
export const KEY_REFUSED_REASON = "Ortto refuses this site's key";

function tickArrivals(second: number) {
  const a = local.arrivals;
  if (a.second !== second) {
    a.previous = a.second === second - 1 ? a.count : 0;
    a.second = second;
    a.count = 0;
  }
  a.count++;
}

/**
 * The one decision on the request path: should this page batch skip the inline try and go
 * straight to the queue, where the consumer sends it in a full request? Yes while Ortto asked
 * everyone to pause or did so recently, while the queue is using the budget (the pacer said
 * so), when this isolate alone receives page batches near the budget's rate, or when its inline
 * allowance for this second is spent. No round trip: the pacer is consulted in `waitUntil`.
 */
export function coalescing(c: Context<AppEnv>): boolean {
  const maxRps = relayConfig(c.env).maxRps;
  const now = Date.now();
  const second = Math.floor(now / 1000);
  tickArrivals(second);
  if (local.inline.second !== second) local.inline = { second, sends: 0, leased: 0 };
  const leased = now < local.lease.until;
  // A cold isolate (no lease yet) may send a tenth of the budget inline until it hears from the pacer.
  const allowance = leased ? local.lease.perSecond : inlineGrace(maxRps);
  const demand = Math.max(local.arrivals.previous, local.arrivals.count);
  // A refused key: the queue's consumer probes for it; a page never waits on the circuit.
  const keyRefused = local.circuits.has(c.get("site").name);
  const queue =
    keyRefused ||
    now < local.pausedUntil ||
    now < local.shortUntil ||
    demand > Math.max(1, maxRps * NEAR_BUDGET) ||
    local.inline.sends >= allowance;
  if (queue) {
    local.coalesced++;
    c.get("log").reason = keyRefused ? KEY_REFUSED_REASON : "budget";
  } else {
    local.inlineDecisions++;
    local.inline.sends++;
    if (leased) local.inline.leased++;
    else {
      const last = local.unleased.at(-1);
      if (last?.[0] === second) last[1]++;
      else local.unleased.push([second, 1]);
    }
  }
  sync(c, now);
  return queue;
}

/** After an inline send answered 429: tell the pacer now, after the answer, so every sender pauses (not at the next page batch). */
export function reportPause(c: Context<AppEnv>) {
  sync(c, Date.now());
}

/** At most once a second (or at once after a 429), in waitUntil: charge inline sends, renew the lease, learn pauses. */
function sync(c: Context<AppEnv>, now: number) {
  if (now - local.lastSync < SYNC_MS && !local.pauseReport.count) return;
  const pacer = pacerOf(c.env);
  if (!pacer) return;
  let waitUntil: (promise: Promise<unknown>) => void;
  try {
    waitUntil = c.executionCtx.waitUntil.bind(c.executionCtx);
  } catch {
    return; // no execution context (a test calling the app directly): nothing runs after the answer
  }
  local.isolate ||= crypto.randomUUID();
  local.lastSync = now;
  const report: SyncReport = {
    isolate: local.isolate,
    demand: local.arrivals.second === Math.floor(now / 1000) ? local.arrivals.previous : 0,
    inlineNow: local.inline.second === Math.floor(now / 1000) ? local.inline.leased : 0,
    unleased: local.unleased,
    ...(local.pauseReport.count ? { pausedUntil: local.pauseReport.until, rateLimited: local.pauseReport.count } : {}),
  };
  local.unleased = [];
  local.pauseReport = { until: 0, count: 0 };
  waitUntil(
    pacer.sync(report).then(applySync, () => {
      // The pacer was unreachable: keep coalescing on local signals; the next sync tries again.
    }),
  );
}

export function applySync(answer: SyncAnswer & { refusedUntil?: number; keyRefused?: CircuitView[] }) {
  local.lease = { perSecond: answer.perSecond, until: answer.until };
  local.pausedUntil = Math.max(local.pausedUntil, answer.pausedUntil);
  local.shortUntil = Math.max(local.shortUntil, answer.shortUntil);
  applyAccountView(answer);
}

/** The pacer's 4xx window and refused keys (with a sync, or a consumer's slot): this isolate heeds them from now on. */
export function applyAccountView(view: { refusedUntil?: number; keyRefused?: CircuitView[] }) {
  local.heard = true;
  if (view.refusedUntil !== undefined) local.refusedUntil = Math.max(local.refusedUntil, view.refusedUntil);
  if (view.keyRefused) {
    local.circuits = new Map(view.keyRefused.map((v) => [v.site, { status: v.status, since: v.since, nextProbeAt: v.next_probe_at }]));
  }
}

/** Whether a 4xx answer this isolate knows of is at most 15 s old. */
export const refusalWindowOpen = () => Date.now() < local.refusedUntil;

/**
 * Whether an inline send must ask the pacer for a permit first: while a 4xx window is open, and in
 * an isolate that has not heard from the pacer yet. Such an isolate cannot know of a window or a
 * circuit opened elsewhere, so a revoked key would otherwise cost one 401 per fresh isolate, past
 * Ortto's ban at 15. One Durable Object call per fresh isolate; none for healthy traffic after that.
 */
export const mustAskPacer = (c: Context<AppEnv>) => refusalWindowOpen() || (!local.heard && pacerOf(c.env) !== undefined);

/** The pacer's answer after a 4xx or a success. */
export function applyRefusal(answer: RefusalAnswer) {
  local.refusedUntil = Math.max(local.refusedUntil, answer.refusedUntil);
}

export const circuitOpen = (site: string) => local.circuits.has(site);

/** Ortto refused this site's key: its sending pauses here at once (the pacer's circuit decides the probes). */
export function noteKeyRefused(site: string, status: number, nextProbeAt = Date.now() + 1000) {
  const since = local.circuits.get(site)?.since ?? Date.now();
  local.circuits.set(site, { status, since, nextProbeAt });
}

/** When this site's circuit lets the next probe through, as far as this isolate knows. */
export const circuitProbeAt = (site: string) => local.circuits.get(site)?.nextProbeAt ?? 0;

export function noteKeyWorks(site: string) {
  local.circuits.delete(site);
}

/** How long a page's request waits for the pacer's permit while a 4xx window is open; beyond it the batch is queued. */
const ADMIT_TIMEOUT_MS = 500;

/**
 * While a window of 4xx answers is open, or before this isolate has heard from the pacer
 * (`mustAskPacer`; only then is this called, so a healthy request of a warm isolate never calls the
 * pacer), an inline send needs the pacer's permit, as the queue's requests do. Answers the permit, `true` without a pacer, or `false` (refused, or the pacer slow): queued.
 */
export async function admitInline(c: Context<AppEnv>): Promise<string | boolean> {
  const pacer = pacerOf(c.env);
  const ttlMs = relayConfig(c.env).timeoutMs + 1000;
  // No pacer binding: this isolate's own window caps its requests.
  const answer = pacer
    ? await Promise.race([
        pacer.admit(ttlMs).catch(() => undefined),
        new Promise<undefined>((resolve) => setTimeout(resolve, ADMIT_TIMEOUT_MS)),
      ])
    : admitLocally(ttlMs);
  if (answer && "refusedUntil" in answer) applyAccountView(answer as { refusedUntil: number; keyRefused?: CircuitView[] });
  if (answer && "permit" in answer) {
    // A fresh isolate learns here that its site's key is refused: the permit goes back, the batch waits.
    if (!local.circuits.has(c.get("site").name)) return answer.permit;
    reportSettled(c, answer.permit);
    c.get("log").reason = KEY_REFUSED_REASON;
    return false;
  }
  c.get("log").reason = "refusals";
  return false;
}

/** After the answer: in waitUntil, or (a test calling the app directly, with no execution context) left to run. */
function afterAnswer(c: Context<AppEnv>, work: Promise<unknown>) {
  try {
    c.executionCtx.waitUntil(work);
  } catch {
    void work;
  }
}

/** An inline send with a permit that Ortto did not refuse: the permit goes back (after the answer). */
export function reportSettled(c: Context<AppEnv>, permit: string) {
  if (isLocalPermit(permit)) return settleLocally(permit);
  const pacer = pacerOf(c.env);
  if (!pacer) return;
  afterAnswer(
    c,
    pacer.succeeded({ permit }).then(applyRefusal, () => undefined),
  );
}

/** An inline send answered 4xx: the pacer counts it (after the answer) and, for a refused key, opens the site's circuit. */
export function reportRefusal(c: Context<AppEnv>, status: number, site: string, permit?: string) {
  if (KEY_REFUSED.has(status)) noteKeyRefused(site, status);
  if (permit && isLocalPermit(permit)) {
    settleLocally(permit);
    permit = undefined;
  }
  const pacer = pacerOf(c.env);
  if (!pacer) return;
  afterAnswer(
    c,
    pacer.refused({ status, site, ...(permit ? { permit } : {}) }).then(
      (answer) => {
        applyRefusal(answer);
        if (answer.nextProbeAt) noteKeyRefused(site, status, answer.nextProbeAt);
      },
      () => undefined,
    ),
  );
}

/**
 * Every upstream request's outcome (upstream.ts): counted for /healthz, and a 429 pauses this
 * isolate at once (inline sends stop) and is reported to the pacer so that every sender pauses.
 */
export function noteUpstream(status: number | undefined, retryAfterSeconds?: number) {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  let count = local.upstream.get(second);
  if (!count) {
    count = { requests: 0, rate_limited: 0 };
    local.upstream.set(second, count);
    for (const old of local.upstream.keys()) {
      if (old > second - KEPT_SECONDS) break;
      local.upstream.delete(old);
    }
  }
  count.requests++;
  if (status !== undefined && status >= 400 && status < 500 && status !== 429) {
    local.refusedUntil = Math.max(local.refusedUntil, now + REFUSAL_WINDOW_MS);
    local.refusals.record(now);
    return;
  }
  if (status !== 429) return;
  count.rate_limited++;
  local.rateLimited++;
  local.lastRateLimitedAt = now;
  const until = now + (retryAfterSeconds ?? 10) * 1000;
  local.pausedUntil = Math.max(local.pausedUntil, until);
  local.shortUntil = Math.max(local.shortUntil, until + RECENT_429_MS);
  local.pauseReport = { until: Math.max(local.pauseReport.until, until), count: local.pauseReport.count + 1 };
}

/** A 429 the consumer reported to the pacer itself: not to be reported again by the next sync. */
export function pauseReported() {
  local.pauseReport = { until: 0, count: 0 };
}

/** When this isolate last learnt that no sender may reach Ortto (epoch ms). */
export const pausedUntil = () => local.pausedUntil;

/** The queue consumer's latest batch (a backlog signal); sent to the pacer with its slot requests. */
export function noteBatch(messages: readonly { timestamp: Date }[]) {
  const now = Date.now();
  const oldest = Math.min(now, ...messages.map((m) => m.timestamp.getTime()));
  local.lastBatch = { messages: messages.length, oldestAgeMs: now - oldest, at: now };
}

export const lastBatch = () => local.lastBatch ?? undefined;

const iso = (ms: number) => (ms > 0 ? new Date(ms).toISOString() : null);

/** This isolate's budget signals, for /healthz. */
export function isolateBudget(now = Date.now()) {
  const second = Math.floor(now / 1000);
  const last10 = Array.from({ length: 10 }, (_, i) => local.upstream.get(second - 9 + i)?.requests ?? 0);
  let limitedLastMinute = 0;
  for (const [s, count] of local.upstream) if (s > second - KEPT_SECONDS) limitedLastMinute += count.rate_limited;
  return {
    upstream_requests_last_10s: last10,
    upstream_rate: last10.slice(0, 9).reduce((a, b) => a + b, 0) / 9,
    rate_limited_last_minute: limitedLastMinute,
    rate_limited: local.rateLimited,
    last_rate_limited_at: iso(local.lastRateLimitedAt),
    paused_until: now < local.pausedUntil ? iso(local.pausedUntil) : null,
    refusals_window_until: now < local.refusedUntil ? iso(local.refusedUntil) : null,
    coalescing_until: now < local.shortUntil ? iso(local.shortUntil) : null,
    inline_lease: now < local.lease.until ? { per_second: local.lease.perSecond, until: iso(local.lease.until) } : null,
    page_batches_inline: local.inlineDecisions,
    page_batches_coalesced: local.coalesced,
    last_queue_batch: local.lastBatch
      ? {
          messages: local.lastBatch.messages,
          oldest_message_age_s: Math.round(local.lastBatch.oldestAgeMs / 1000),
          at: iso(local.lastBatch.at),
        }
      : null,
  };
}

/** Forgets everything this isolate knows of the budget (tests). */
export function resetIsolateBudget() {
  Object.assign(local, {
    lease: { perSecond: 0, until: 0 },
    pausedUntil: 0,
    shortUntil: 0,
    arrivals: { second: 0, count: 0, previous: 0 },
    inline: { second: 0, sends: 0, leased: 0 },
    unleased: [],
    pauseReport: { until: 0, count: 0 },
    lastSync: 0,
    heard: false,
    upstream: new Map(),
    rateLimited: 0,
    lastRateLimitedAt: 0,
    inlineDecisions: 0,
    coalesced: 0,
    lastBatch: null,
    refusedUntil: 0,
    circuits: new Map(),
    refusals: new RefusalWindow(),
  });
}

/** Sites whose key Ortto refuses, as this isolate knows them (for /healthz). */
export function keyCircuits(now = Date.now()) {
  return Object.fromEntries(
    [...local.circuits].map(([site, c]) => [
      site,
      {
        state: "open",
        reason: KEY_REFUSED_REASON,
        upstream_status: c.status,
        since: iso(c.since),
        next_probe_at: iso(Math.max(now, c.nextProbeAt)),
      },
    ]),
  );
}
