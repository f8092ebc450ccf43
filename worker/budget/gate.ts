/**
 * This isolate's view of the account's request budget, kept in memory so that the request path
 * never waits on anyone: whether a page batch goes to Ortto inline or straight to the queue is
 * decided from counters here, and the view is refreshed from the pacer (pacer.ts) at most once
 * a second, after the answer, and from the outcome of every upstream request (`noteUpstream`).
 * One instance per isolate (worker/isolate.ts), shared by the request path and the queue consumer;
 * the pacer is reached through the `PacerPort` each call is given, and time through the clock.
 */
import type { Clock } from "../isolate.ts";
import type { UpstreamResult } from "../upstream.ts";
import type { BatchNote, PacerPort } from "./binding.ts";
import type { AccountView, RefusalAnswer } from "./pacer.ts";
import { type CircuitView, KEY_REFUSED, type Permit, REFUSAL_WINDOW_MS, RefusalWindow } from "./refusals.ts";
import { inlineGrace, RECENT_429_MS, type SyncAnswer, type SyncReport } from "./seconds.ts";

/** Page batches a second in this isolate beyond which it coalesces, as a share of ORTTO_MAX_RPS. */
const NEAR_BUDGET = 0.5;
/** How often an isolate with traffic syncs with the pacer. */
const SYNC_MS = 1000;
/** Seconds of upstream counts kept for /healthz. */
const KEPT_SECONDS = 60;
/** Marks a permit of this isolate's own window (`admitLocally`), not the pacer's. */
const LOCAL_PERMIT = "local:";

/** What the operator reads in the log line and /healthz when a site's circuit is open. */
export const KEY_REFUSED_REASON = "Ortto refuses this site's key";

/**
 * Hands work to run after the answer (`waitUntil`); undefined without an execution context (a test
 * calling the app directly), where the pacer is not synced and reports simply run on their own.
 */
export type Later = ((work: Promise<unknown>) => void) | undefined;
const run = (later: Later, work: Promise<unknown>) => (later ? later(work) : void work);

/** Why a page batch goes to the queue rather than to Ortto inline, as its log line says. */
export type QueueReason = "budget" | "refusals" | typeof KEY_REFUSED_REASON;

const isLocalPermit = (permit: string | undefined) => permit?.startsWith(LOCAL_PERMIT) ?? false;
const iso = (ms: number) => (ms > 0 ? new Date(ms).toISOString() : null);

export class IsolateBudget {
  #isolate = "";
  /** Inline sends a second the pacer reserved for this isolate, until when. */
  #lease = { perSecond: 0, until: 0 };
  #pausedUntil = 0;
  #shortUntil = 0;
  /** Page batches received: this second, and the second before. */
  #arrivals = { second: 0, count: 0, previous: 0 };
  /** Inline sends this second, and how many of them the lease covered. */
  #inline = { second: 0, sends: 0, leased: 0 };
  /** Inline sends without a lease, by second, not yet charged at the pacer. */
  #unleased: [number, number][] = [];
  /** A 429 not yet reported to the pacer: until when, and how many. */
  #pauseReport = { until: 0, count: 0 };
  #lastSync = 0;
  /** Whether the pacer has told this isolate the account's 4xx window and refused keys (an admit, a sync or a slot). */
  #heard = false;
  /** Epoch second → upstream requests this isolate made, and how many were answered 429. */
  #upstream = new Map<number, { requests: number; rate_limited: number }>();
  #rateLimited = 0;
  #lastRateLimitedAt = 0;
  #inlineDecisions = 0;
  #coalesced = 0;
  /** The queue consumer's latest batch (a backlog signal); sent to the pacer with its slot requests. */
  #lastBatch?: BatchNote;
  /** Until when a request Ortto answered 4xx (here or, learnt at sync, anywhere) keeps senders asking the pacer first. */
  #refusedUntil = 0;
  /** Sites whose key Ortto refuses (401/403/404): their page batches wait in the queue for the circuit's probe. */
  #circuits = new Map<string, { status: number; since: number; nextProbeAt: number }>();
  /**
   * This isolate's own window of 4xx answers: the cap on its requests when the pacer cannot be
   * asked (no binding, or the Durable Object unreachable), so that it never storms Ortto alone.
   */
  #refusals = new RefusalWindow();
  /** Without a pacer (its binding absent or unreachable): when this isolate's next request may go, on the budget's spacing. */
  #nextLocalSlot = 0;

  constructor(readonly now: Clock = () => Date.now()) {}

  /**
   * The one decision on the request path: should this page batch skip the inline try and go
   * straight to the queue, where the consumer sends it in a full request? Yes while Ortto asked
   * everyone to pause or did so recently, while the queue is using the budget (the pacer said
   * so), when this isolate alone receives page batches near the budget's rate, when its inline
   * allowance for this second is spent, or when Ortto refuses the site's key (the queue's consumer
   * probes for it; a page never waits on the circuit). No round trip: the pacer is consulted later.
   * Answers why the batch is queued, or undefined to send it inline.
   */
  coalescing(site: string, maxRps: number, pacer: PacerPort | undefined, later: Later): QueueReason | undefined {
    const now = this.now();
    const second = Math.floor(now / 1000);
    this.#tickArrivals(second);
    if (this.#inline.second !== second) this.#inline = { second, sends: 0, leased: 0 };
    const leased = now < this.#lease.until;
    // A cold isolate (no lease yet) may send a tenth of the budget inline until it hears from the pacer.
    const allowance = leased ? this.#lease.perSecond : inlineGrace(maxRps);
    const demand = Math.max(this.#arrivals.previous, this.#arrivals.count);
    const reason: QueueReason | undefined = this.#circuits.has(site)
      ? KEY_REFUSED_REASON
      : now < this.#pausedUntil || now < this.#shortUntil || demand > Math.max(1, maxRps * NEAR_BUDGET) || this.#inline.sends >= allowance
        ? "budget"
        : undefined;
    if (reason) this.#coalesced++;
    else {
      this.#inlineDecisions++;
      this.#inline.sends++;
      if (leased) this.#inline.leased++;
      else {
        const last = this.#unleased.at(-1);
        if (last?.[0] === second) last[1]++;
        else this.#unleased.push([second, 1]);
      }
    }
    this.#sync(pacer, later, now);
    return reason;
  }

  /**
   * Whether an inline send must ask the pacer for a permit first: while a 4xx window is open, and in
   * an isolate that has not heard from the pacer yet. Such an isolate cannot know of a window or a
   * circuit opened elsewhere, so a revoked key would otherwise cost one 401 per fresh isolate, past
   * Ortto's ban at 15. One Durable Object call per fresh isolate; none for healthy traffic after that.
   */
  mustAskPacer(pacer: PacerPort | undefined): boolean {
    return this.refusalWindowOpen() || (!this.#heard && pacer !== undefined);
  }

  /**
   * An inline send's permit (asked only when `mustAskPacer`), as the queue's requests have: the
   * pacer's, this isolate's own without a pacer binding, or none (refused, the pacer slower than
   * `waitMs` (PACER_TIMEOUT_MS), or the site's key refused): then the batch is queued, for the reason given.
   */
  async admitInline(
    site: string,
    ttlMs: number,
    waitMs: number,
    pacer: PacerPort | undefined,
    later: Later,
  ): Promise<{ permit: string } | { queue: QueueReason }> {
    const answer: (Permit & Partial<AccountView>) | undefined = pacer
      ? await Promise.race([pacer.admit(ttlMs).catch(() => undefined), new Promise<undefined>((resolve) => setTimeout(resolve, waitMs))])
      : this.admitLocally(ttlMs);
    if (answer?.refusedUntil !== undefined) this.applyAccountView(answer);
    if (answer && "permit" in answer) {
      // A fresh isolate learns here that its site's key is refused: the permit goes back, the batch waits.
      if (!this.#circuits.has(site)) return { permit: answer.permit };
      this.#reportSettled(answer.permit, pacer, later);
      return { queue: KEY_REFUSED_REASON };
    }
    return { queue: "refusals" };
  }

  /**
   * An inline send's answer, after it: a 429 is told to the pacer now (every sender pauses, not
   * only at this isolate's next page batch); a 4xx is counted by the pacer, and a refused key opens
   * the site's circuit; otherwise the permit, if any, goes back.
   */
  reportInline(status: number | undefined, site: string, permit: string | undefined, pacer: PacerPort | undefined, later: Later) {
    if (status === 429) this.#sync(pacer, later, this.now());
    if (status !== undefined && status >= 400 && status < 500 && status !== 429) this.#reportRefusal(status, site, permit, pacer, later);
    else if (permit !== undefined) this.#reportSettled(permit, pacer, later);
  }

  /** A permit's request that Ortto did not refuse: the permit goes back (after the answer). */
  #reportSettled(permit: string, pacer: PacerPort | undefined, later: Later) {
    if (isLocalPermit(permit)) return this.settleLocally(permit);
    if (pacer)
      run(
        later,
        pacer.succeeded({ permit }).then(
          (answer) => this.applyRefusal(answer),
          () => undefined,
        ),
      );
  }

  #reportRefusal(status: number, site: string, permit: string | undefined, pacer: PacerPort | undefined, later: Later) {
    if (KEY_REFUSED.has(status)) this.noteKeyRefused(site, status);
    if (permit && isLocalPermit(permit)) {
      this.settleLocally(permit);
      permit = undefined;
    }
    if (!pacer) return;
    run(
      later,
      pacer.refused({ status, site, ...(permit ? { permit } : {}) }).then(
        (answer) => {
          this.applyRefusal(answer);
          if (answer.nextProbeAt) this.noteKeyRefused(site, status, answer.nextProbeAt);
        },
        () => undefined,
      ),
    );
  }

  /** A permit from this isolate's own window of 4xx answers, for when the pacer cannot be asked. */
  admitLocally(ttlMs: number): Permit {
    const answer = this.#refusals.admit(this.now(), ttlMs);
    return "permit" in answer ? { permit: LOCAL_PERMIT + answer.permit } : answer;
  }

  /** A local permit's request was answered (its 4xx, if any, is counted by noteUpstream): the permit goes back. */
  settleLocally(permit: string) {
    this.#refusals.settle(permit.slice(LOCAL_PERMIT.length), false, this.now());
  }

  /** The pacer's 4xx window and refused keys (with a sync, a permit, or a consumer's slot): this isolate heeds them from now on. */
  applyAccountView(view: { refusedUntil?: number; keyRefused?: CircuitView[] }) {
    this.#heard = true;
    if (view.refusedUntil !== undefined) this.#refusedUntil = Math.max(this.#refusedUntil, view.refusedUntil);
    if (view.keyRefused) {
      this.#circuits = new Map(view.keyRefused.map((v) => [v.site, { status: v.status, since: v.since, nextProbeAt: v.next_probe_at }]));
    }
  }

  /** The pacer's answer after a 4xx or a success. */
  applyRefusal(answer: RefusalAnswer) {
    this.#refusedUntil = Math.max(this.#refusedUntil, answer.refusedUntil);
  }

  /** Whether a 4xx answer this isolate knows of is at most 15 s old. */
  refusalWindowOpen(): boolean {
    return this.now() < this.#refusedUntil;
  }

  circuitOpen(site: string): boolean {
    return this.#circuits.has(site);
  }

  /** When this site's circuit lets the next probe through, as far as this isolate knows. */
  circuitProbeAt(site: string): number {
    return this.#circuits.get(site)?.nextProbeAt ?? 0;
  }

  /** Ortto refused this site's key: its sending pauses here at once (the pacer's circuit decides the probes). */
  noteKeyRefused(site: string, status: number, nextProbeAt = this.now() + 1000) {
    const since = this.#circuits.get(site)?.since ?? this.now();
    this.#circuits.set(site, { status, since, nextProbeAt });
  }

  noteKeyWorks(site: string) {
    this.#circuits.delete(site);
  }

  /**
   * Every upstream request's outcome (upstream.ts answers it; its senders note it here): counted for
   * /healthz; a 4xx opens this isolate's refusals window; a 429 pauses this isolate at once (inline
   * sends stop) and is reported to the pacer at the next sync, so that every sender pauses.
   */
  noteUpstream(result: UpstreamResult) {
    const now = this.now();
    const second = Math.floor(now / 1000);
    let count = this.#upstream.get(second);
    if (!count) {
      count = { requests: 0, rate_limited: 0 };
      this.#upstream.set(second, count);
      for (const old of this.#upstream.keys()) {
        if (old > second - KEPT_SECONDS) break;
        this.#upstream.delete(old);
      }
    }
    count.requests++;
    const status = result.status;
    if (status !== undefined && status >= 400 && status < 500 && status !== 429) {
      this.#refusedUntil = Math.max(this.#refusedUntil, now + REFUSAL_WINDOW_MS);
      this.#refusals.record(now);
      return;
    }
    if (status !== 429) return;
    count.rate_limited++;
    this.#rateLimited++;
    this.#lastRateLimitedAt = now;
    const until = now + ((!result.ok && !result.permanent && result.retryAfterSeconds) || 10) * 1000;
    this.#pausedUntil = Math.max(this.#pausedUntil, until);
    this.#shortUntil = Math.max(this.#shortUntil, until + RECENT_429_MS);
    this.#pauseReport = { until: Math.max(this.#pauseReport.until, until), count: this.#pauseReport.count + 1 };
  }

  /** A 429 the consumer reported to the pacer itself: not to be reported again by the next sync. */
  pauseReported() {
    this.#pauseReport = { until: 0, count: 0 };
  }

  /** When this isolate last learnt that no sender may reach Ortto (epoch ms). */
  pausedUntil(): number {
    return this.#pausedUntil;
  }

  /** Without a pacer: when this isolate's next request may go (after any pause, 1/maxRps s after its last). */
  localSlot(maxRps: number): number {
    const at = Math.max(this.now(), this.#nextLocalSlot, this.#pausedUntil);
    this.#nextLocalSlot = at + 1000 / maxRps;
    return at;
  }

  /** The queue consumer's latest batch (a backlog signal); sent to the pacer with its slot requests. */
  noteBatch(messages: readonly { timestamp: Date }[]) {
    const now = this.now();
    const oldest = Math.min(now, ...messages.map((m) => m.timestamp.getTime()));
    this.#lastBatch = { messages: messages.length, oldestAgeMs: now - oldest, at: now };
  }

  lastBatch(): BatchNote | undefined {
    return this.#lastBatch;
  }

  /** This isolate's budget signals, for /healthz. */
  stats() {
    const now = this.now();
    const second = Math.floor(now / 1000);
    const last10 = Array.from({ length: 10 }, (_, i) => this.#upstream.get(second - 9 + i)?.requests ?? 0);
    let limitedLastMinute = 0;
    for (const [s, count] of this.#upstream) if (s > second - KEPT_SECONDS) limitedLastMinute += count.rate_limited;
    const batch = this.#lastBatch;
    return {
      upstream_requests_last_10s: last10,
      upstream_rate: last10.slice(0, 9).reduce((a, b) => a + b, 0) / 9,
      rate_limited_last_minute: limitedLastMinute,
      rate_limited: this.#rateLimited,
      last_rate_limited_at: iso(this.#lastRateLimitedAt),
      paused_until: now < this.#pausedUntil ? iso(this.#pausedUntil) : null,
      refusals_window_until: now < this.#refusedUntil ? iso(this.#refusedUntil) : null,
      coalescing_until: now < this.#shortUntil ? iso(this.#shortUntil) : null,
      inline_lease: now < this.#lease.until ? { per_second: this.#lease.perSecond, until: iso(this.#lease.until) } : null,
      page_batches_inline: this.#inlineDecisions,
      page_batches_coalesced: this.#coalesced,
      last_queue_batch: batch
        ? { messages: batch.messages, oldest_message_age_s: Math.round(batch.oldestAgeMs / 1000), at: iso(batch.at) }
        : null,
    };
  }

  /** Sites whose key Ortto refuses, as this isolate knows them (for /healthz). */
  circuits() {
    const now = this.now();
    return Object.fromEntries(
      [...this.#circuits].map(([site, c]) => [
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

  #tickArrivals(second: number) {
    const a = this.#arrivals;
    if (a.second !== second) {
      a.previous = a.second === second - 1 ? a.count : 0;
      a.second = second;
      a.count = 0;
    }
    a.count++;
  }

  /** At most once a second (or at once after a 429), after the answer: charge inline sends, renew the lease, learn pauses. */
  #sync(pacer: PacerPort | undefined, later: Later, now: number) {
    if (now - this.#lastSync < SYNC_MS && !this.#pauseReport.count) return;
    if (!pacer || !later) return;
    this.#isolate ||= crypto.randomUUID();
    this.#lastSync = now;
    const second = Math.floor(now / 1000);
    const report: SyncReport = {
      isolate: this.#isolate,
      demand: this.#arrivals.second === second ? this.#arrivals.previous : 0,
      inlineNow: this.#inline.second === second ? this.#inline.leased : 0,
      unleased: this.#unleased,
      ...(this.#pauseReport.count ? { pausedUntil: this.#pauseReport.until, rateLimited: this.#pauseReport.count } : {}),
    };
    this.#unleased = [];
    this.#pauseReport = { until: 0, count: 0 };
    // The pacer unreachable: keep coalescing on local signals; the next sync tries again.
    later(
      pacer.sync(report).then(
        (answer) => this.#applySync(answer),
        () => undefined,
      ),
    );
  }

  #applySync(answer: SyncAnswer & { refusedUntil?: number; keyRefused?: CircuitView[] }) {
    this.#lease = { perSecond: answer.perSecond, until: answer.until };
    this.#pausedUntil = Math.max(this.#pausedUntil, answer.pausedUntil);
    this.#shortUntil = Math.max(this.#shortUntil, answer.shortUntil);
    this.applyAccountView(answer);
  }
}
