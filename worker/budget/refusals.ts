/**
 * What keeps the relay's IP from Ortto's ban (15 bad requests in 15 s): the account's window of
 * requests Ortto answered 4xx, and a circuit per site whose key Ortto refuses. Pure and clock-free,
 * tested in Node; the `UpstreamPacer` Durable Object holds the one instance every sender shares.
 * Senders consult them only while a window or a circuit is open, so healthy traffic never waits.
 */

/** Statuses by which Ortto refuses a key (revoked, wrong region or data source). */
export const KEY_REFUSED: ReadonlySet<number> = new Set([401, 403, 404]);

/** Ortto's window for bad requests. */
export const REFUSAL_WINDOW_MS = 15_000;
/**
 * At most this many requests answered 4xx (or in flight while a window is open) per window. Ortto
 * bans at 15: the margin covers isolates whose first 4xx came before they heard of the window.
 */
export const MAX_REFUSALS = 10;
/** A circuit's first probe waits this long after the refusal; each refused probe doubles it, up to the maximum. */
export const PROBE_FIRST_MS = 1_000;
export const PROBE_MAX_MS = 5 * 60_000;

export type Permit = { permit: string } | { retryAtMs: number };
export type Probe = { probe: true } | { closed: true } | { retryAtMs: number };

export interface CircuitView {
  site: string;
  status: number;
  since: number;
  next_probe_at: number;
  refused_probes: number;
}

export class RefusalWindow {
  /** When each 4xx answer in the window came, oldest first. */
  #answers: number[] = [];
  /** Permits handed out and not settled: id → expiry. */
  #permits = new Map<string, number>();
  #next = 0;

  #prune(now: number) {
    while (this.#answers.length && (this.#answers[0] as number) <= now - REFUSAL_WINDOW_MS) this.#answers.shift();
    for (const [id, expires] of this.#permits) if (expires <= now) this.#permits.delete(id);
  }

  /** A request Ortto answered 4xx (without a permit: the first, before anyone knew of a window). */
  record(now: number, count = 1) {
    this.#prune(now);
    for (let i = 0; i < count; i++) this.#answers.push(now);
  }

  /**
   * While a window is open, every request might be refused too: one may start only if the 4xx
   * answers in the window plus the requests in flight stay under MAX_REFUSALS.
   */
  admit(now: number, ttlMs: number): Permit {
    this.#prune(now);
    if (this.#answers.length + this.#permits.size < MAX_REFUSALS) {
      const permit = `p${++this.#next}`;
      this.#permits.set(permit, now + ttlMs);
      return { permit };
    }
    const oldest = this.#answers[0];
    const firstPermit = Math.min(...this.#permits.values());
    return { retryAtMs: Math.max(now + 100, Math.min(oldest === undefined ? firstPermit : oldest + REFUSAL_WINDOW_MS, firstPermit)) };
  }

  settle(permit: string, refused: boolean, now: number) {
    this.#permits.delete(permit);
    if (refused) this.record(now);
  }

  /** Until when senders must ask before sending (0: no window). */
  openUntil(now: number): number {
    this.#prune(now);
    const last = this.#answers.at(-1);
    return last === undefined ? 0 : last + REFUSAL_WINDOW_MS;
  }

  count(now: number): number {
    this.#prune(now);
    return this.#answers.length;
  }
}

/** A circuit per site: Ortto refused its key (401, 403, 404); one probe at a time, backing off, until a request succeeds. */
export class KeyCircuits {
  #open = new Map<string, { status: number; since: number; nextProbeAt: number; backoffMs: number; probing: number; refused: number }>();

  /** A request of this site's was answered 401/403/404: open the circuit, or (a refused probe) back off the next one. */
  refused(site: string, status: number, now: number): number {
    const c = this.#open.get(site);
    if (!c) {
      this.#open.set(site, { status, since: now, nextProbeAt: now + PROBE_FIRST_MS, backoffMs: PROBE_FIRST_MS, probing: 0, refused: 0 });
      return now + PROBE_FIRST_MS;
    }
    c.status = status;
    // A request refused while no probe was out (under way before the circuit opened, or from an
    // isolate that had not heard of it) says nothing new: only a refused probe backs off.
    if (!c.probing) return c.nextProbeAt;
    c.refused++;
    c.probing = 0;
    c.backoffMs = Math.min(PROBE_MAX_MS, c.backoffMs * 2);
    c.nextProbeAt = now + c.backoffMs;
    return c.nextProbeAt;
  }

  /** May a sender of this site try now? One probe at a time, when its time has come. */
  probe(site: string, now: number, ttlMs: number): Probe {
    const c = this.#open.get(site);
    if (!c) return { closed: true };
    if (now < c.nextProbeAt || now < c.probing) return { retryAtMs: Math.max(c.nextProbeAt, c.probing) };
    c.probing = now + ttlMs;
    return { probe: true };
  }

  /** A request of this site's succeeded: the key works again. */
  works(site: string) {
    this.#open.delete(site);
  }

  list(): CircuitView[] {
    return [...this.#open].map(([site, c]) => ({
      site,
      status: c.status,
      since: c.since,
      next_probe_at: c.nextProbeAt,
      refused_probes: c.refused,
    }));
  }
}
