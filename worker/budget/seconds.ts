/**
 * The account's request budget as a ledger of calendar seconds: how many upstream requests
 * each second holds (reserved by the queue consumer, leased to isolates for inline sends, or
 * reported after the fact). Pure and clock-free so that it can be tested in Node; the
 * `UpstreamPacer` Durable Object (pacer.ts) holds the one instance every sender shares.
 *
 * Invariant: no calendar second is given more than `maxRps` requests. Ortto counts requests
 * per second, so a sender that starts its request inside its second (the `deadline`) never
 * pushes the account over; a request that is late by a network's latency can land in the next
 * second, which is why queue slots are spread through their second and end `step` before it.
 */

/** What an isolate tells the pacer when it syncs (at most once a second, after its answers). */
export interface SyncReport {
  /** A random id per isolate, so its lease can be replaced rather than added to. */
  isolate: string;
  /** Page batches this isolate received in its last full second (inline or queued). */
  demand: number;
  /** Inline sends in the current second so far, leased or not. */
  inlineNow: number;
  /** Inline sends made without a lease (a cold isolate's first), by second: charged now. */
  unleased: [second: number, sends: number][];
  /** A pause this isolate learnt from Ortto (a 429), epoch ms, and how many 429s it had since its last sync. */
  pausedUntil?: number;
  rateLimited?: number;
}

/** The pacer's answer to a sync: the isolate's inline allowance, and whether to coalesce. */
export interface SyncAnswer {
  /** Inline sends this isolate may make per calendar second until `until` (0: queue everything). */
  perSecond: number;
  until: number;
  /** No sender may reach Ortto before this (Ortto's try-in-seconds). */
  pausedUntil: number;
  /** Until then, page batches go to the queue: a recent 429, or the queue is using the budget. */
  shortUntil: number;
}

export type Slot = { at: number; deadline: number } | { retryAfterMs: number };

/** How long an inline lease lasts; isolates with traffic renew it every second. */
export const LEASE_MS = 5_000;
/** How long after a 429's pause ends page batches keep going to the queue. */
export const RECENT_429_MS = 10_000;
/** How long the queue's use of the budget keeps page batches coalescing (see `slot`). */
export const QUEUE_BUSY_MS = 3_000;
/** Inline sends may use at most this share of a second's budget; the queue always has the rest. */
export const INLINE_SHARE = 0.5;

/** Inline sends a second an isolate may make without a lease (cold, or quiet for LEASE_MS), and the least a lease gives. */
export const inlineGrace = (maxRps: number) => Math.max(1, Math.floor(maxRps / 10));

export interface LedgerStats {
  max_rps: number;
  /** Requests given out (queue slots, inline leases, reported sends) in each of the last 10 seconds, oldest first. */
  last_10s: number[];
  /** Queue slots given out in the last 10 seconds. */
  queue_slots_last_10s: number;
  /** Slots reserved for seconds still to come: the queue's backlog, as the budget sees it. */
  reserved_ahead: number;
  paused_until: string | null;
  short_until: string | null;
  rate_limited: number;
  last_rate_limited_at: string | null;
  inline_leases: number;
  inline_per_second: number;
}

const iso = (ms: number) => (ms > 0 ? new Date(ms).toISOString() : null);

export class BudgetLedger {
  readonly maxRps: number;
  /** Milliseconds between two queue slots in a second. */
  readonly step: number;
  /** A slot must start this long before its second ends, so that it arrives inside it. */
  readonly lateness: number;
  /** Epoch second → requests given out in it. */
  #seconds = new Map<number, number>();
  /** Epoch second → queue slots given out in it (for the stats). */
  #queueSlots = new Map<number, number>();
  #leases = new Map<string, { perSecond: number; until: number }>();
  pausedUntil = 0;
  shortUntil = 0;
  rateLimited = 0;
  lastRateLimitedAt = 0;

  constructor(maxRps: number) {
    this.maxRps = Math.max(1, Math.floor(maxRps));
    this.step = 1000 / this.maxRps;
    this.lateness = Math.min(this.step / 2, 50);
  }

  used(second: number): number {
    return this.#seconds.get(second) ?? 0;
  }

  #add(second: number, n: number) {
    this.#seconds.set(second, Math.max(0, this.used(second) + n));
  }

  /** Forgets seconds more than a minute old. */
  #prune(now: number) {
    const oldest = Math.floor(now / 1000) - 60;
    for (const second of this.#seconds.keys()) if (second < oldest) this.#seconds.delete(second);
    for (const second of this.#queueSlots.keys()) if (second < oldest) this.#queueSlots.delete(second);
    for (const [id, lease] of this.#leases) if (lease.until <= now) this.#leases.delete(id);
  }

  /**
   * The queue consumer's next request: the earliest moment at or after `now` (and after any
   * pause) in a second that still has room, at its place in that second (the j-th request of a
   * second at j·1000/maxRps ms into it). The consumer waits until `at` and must start before
   * `deadline`, or ask again. Nothing within `maxWaitMs` → how long until the pause ends.
   */
  slot(now: number, maxWaitMs: number): Slot {
    this.#prune(now);
    const start = Math.max(now, this.pausedUntil);
    const last = Math.floor((now + maxWaitMs) / 1000);
    for (let second = Math.floor(start / 1000); second <= last; second++) {
      const used = this.used(second);
      if (used >= this.maxRps) continue;
      const at = Math.max(start, second * 1000 + used * this.step);
      const deadline = second * 1000 + 1000 - this.lateness;
      if (at > deadline) continue;
      this.#add(second, 1);
      this.#queueSlots.set(second, (this.#queueSlots.get(second) ?? 0) + 1);
      // The queue is using the budget: page batches coalesce rather than compete with it.
      if (second > Math.floor(now / 1000)) this.shortUntil = Math.max(this.shortUntil, now + QUEUE_BUSY_MS);
      return { at, deadline };
    }
    return { retryAfterMs: Math.max(1000, start - now) };
  }

  /** Ortto said to wait (a 429's try-in-seconds): every sender waits, and page batches coalesce for a while after. */
  pause(until: number, now: number, count = 1) {
    this.rateLimited += count;
    this.lastRateLimitedAt = now;
    this.pausedUntil = Math.max(this.pausedUntil, until);
    this.shortUntil = Math.max(this.shortUntil, until + RECENT_429_MS);
  }

  /**
   * An isolate's sync: charges its unleased sends, then replaces its lease with an allowance
   * for inline sends reserved in every second the lease spans (so the queue's slots leave room
   * for them). No allowance while paused or short, when the isolate's own rate is near the
   * budget (coalescing serves it better), or when other leases hold the inline share.
   */
  sync(report: SyncReport, now: number): SyncAnswer {
    this.#prune(now);
    const current = Math.floor(now / 1000);
    if (report.rateLimited) this.pause(report.pausedUntil ?? now, now, report.rateLimited);
    for (const [second, sends] of report.unleased) this.#add(second, sends);

    const previous = this.#leases.get(report.isolate);
    if (previous) {
      // Give back the rest of the old lease; the current second keeps what was already sent in it.
      for (let s = current; s <= Math.floor(previous.until / 1000); s++) this.#add(s, -previous.perSecond);
      this.#leases.delete(report.isolate);
    }
    this.#add(current, report.inlineNow);

    const inlineCap = Math.max(1, Math.floor(this.maxRps * INLINE_SHARE));
    let perSecond = 0;
    const until = now + LEASE_MS;
    const short = now < this.pausedUntil || now < this.shortUntil || report.demand > inlineCap;
    if (!short) {
      const others = [...this.#leases.values()].reduce((n, l) => n + l.perSecond, 0);
      perSecond = Math.min(inlineCap - others, Math.max(2, inlineGrace(this.maxRps), Math.ceil(report.demand * 2)));
      for (let s = current; s <= Math.floor(until / 1000); s++) {
        const room = this.maxRps - this.used(s) + (s === current ? Math.min(report.inlineNow, perSecond) : 0);
        perSecond = Math.min(perSecond, room);
      }
      perSecond = Math.max(0, perSecond);
    }
    if (perSecond > 0) {
      this.#leases.set(report.isolate, { perSecond, until });
      for (let s = current; s <= Math.floor(until / 1000); s++) {
        // The current second already holds what the isolate sent in it.
        this.#add(s, s === current ? Math.max(0, perSecond - report.inlineNow) : perSecond);
      }
    }
    return { perSecond, until, pausedUntil: this.pausedUntil, shortUntil: short ? Math.max(this.shortUntil, now + 1000) : 0 };
  }

  stats(now: number): LedgerStats {
    this.#prune(now);
    const current = Math.floor(now / 1000);
    const last10 = Array.from({ length: 10 }, (_, i) => this.used(current - 9 + i));
    let ahead = 0;
    for (const [second, n] of this.#queueSlots) if (second > current) ahead += n;
    let queueSlots = 0;
    for (const [second, n] of this.#queueSlots) if (second > current - 10 && second <= current) queueSlots += n;
    const leases = [...this.#leases.values()];
    return {
      max_rps: this.maxRps,
      last_10s: last10,
      queue_slots_last_10s: queueSlots,
      reserved_ahead: ahead,
      paused_until: now < this.pausedUntil ? iso(this.pausedUntil) : null,
      short_until: now < this.shortUntil ? iso(this.shortUntil) : null,
      rate_limited: this.rateLimited,
      last_rate_limited_at: iso(this.lastRateLimitedAt),
      inline_leases: leases.length,
      inline_per_second: leases.reduce((n, l) => n + l.perSecond, 0),
    };
  }
}
