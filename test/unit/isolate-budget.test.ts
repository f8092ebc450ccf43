/**
 * An isolate's view of the account's request budget (worker/budget/gate.ts) against a recording
 * pacer, on fake timers: leases, pauses, the refusals window and circuits play out without
 * waiting. The wiring through the relay (workerd, the real pacer) is in test/worker and test/budget.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { PacerPort } from "../../worker/budget/binding.ts";
import { IsolateBudget, KEY_REFUSED_REASON } from "../../worker/budget/gate.ts";
import { MAX_REFUSALS, REFUSAL_WINDOW_MS } from "../../worker/budget/refusals.ts";
import { RECENT_429_MS, type SyncReport } from "../../worker/budget/seconds.ts";

const T0 = Date.UTC(2026, 11, 6, 10);
const MAX_RPS = 10;

/** A pacer that answers at once and records what it was told. */
function recordingPacer(answers: { perSecond?: number; refusedUntil?: number } = {}) {
  const syncs: SyncReport[] = [];
  const pacer = {
    syncs,
    sync: vi.fn(async (report: SyncReport) => {
      syncs.push(report);
      return {
        perSecond: answers.perSecond ?? 5,
        until: Date.now() + 5000,
        pausedUntil: 0,
        shortUntil: 0,
        refusedUntil: 0,
        keyRefused: [],
      };
    }),
    admit: vi.fn(async () => ({ permit: "p1", refusedUntil: answers.refusedUntil ?? 0, keyRefused: [] })),
    slot: vi.fn(),
    probe: vi.fn(),
    refused: vi.fn(async () => ({ refusedUntil: Date.now() + REFUSAL_WINDOW_MS })),
    succeeded: vi.fn(async () => ({ refusedUntil: 0 })),
    pause: vi.fn(),
  };
  return pacer as typeof pacer & PacerPort;
}

/** `waitUntil`, run at once: what the relay does after its answer. */
const later = (work: Promise<unknown>) => void work;

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
});
afterEach(() => vi.useRealTimers());

describe("inline or queue", () => {
  it("lets a cold isolate send a tenth of the budget inline a second, then queues the rest for the budget", async () => {
    const budget = new IsolateBudget();
    expect(budget.coalescing("default", MAX_RPS, undefined, later)).toBeUndefined();
    expect(budget.coalescing("default", MAX_RPS, undefined, later)).toBe("budget");
    vi.advanceTimersByTime(1000);
    expect(budget.coalescing("default", MAX_RPS, undefined, later)).toBeUndefined();
  });

  it("sends inline as many a second as the pacer's lease allows", async () => {
    const budget = new IsolateBudget();
    const pacer = recordingPacer({ perSecond: 3 });
    budget.coalescing("default", MAX_RPS, pacer, later);
    await vi.advanceTimersByTimeAsync(1000);
    const decisions = Array.from({ length: 4 }, () => budget.coalescing("default", MAX_RPS, pacer, later));
    expect(decisions).toEqual([undefined, undefined, undefined, "budget"]);
  });

  it("queues page batches once this isolate alone receives more than half the budget's rate, whatever its lease", async () => {
    const budget = new IsolateBudget();
    const pacer = recordingPacer({ perSecond: 100 });
    budget.coalescing("default", MAX_RPS, pacer, later);
    await vi.advanceTimersByTimeAsync(1000);
    const decisions = Array.from({ length: 8 }, () => budget.coalescing("default", MAX_RPS, pacer, later));
    expect(decisions).toEqual([undefined, undefined, undefined, undefined, undefined, "budget", "budget", "budget"]);
  });

  it("syncs with the pacer at most once a second, reporting the inline sends it made without a lease", async () => {
    const budget = new IsolateBudget();
    const pacer = recordingPacer();
    for (let i = 0; i < 5; i++) budget.coalescing("default", MAX_RPS, pacer, later);
    expect(pacer.syncs).toHaveLength(1);
    expect(pacer.syncs[0]?.unleased).toEqual([[Math.floor(T0 / 1000), 1]]);
    await vi.advanceTimersByTimeAsync(1000);
    budget.coalescing("default", MAX_RPS, pacer, later);
    expect(pacer.syncs).toHaveLength(2);
  });

  it("does not sync without an execution context to run it after the answer", () => {
    const budget = new IsolateBudget();
    const pacer = recordingPacer();
    budget.coalescing("default", MAX_RPS, pacer, undefined);
    expect(pacer.sync).not.toHaveBeenCalled();
  });
});

describe("Ortto's 429", () => {
  it("pauses inline sends for Ortto's try-in-seconds and RECENT_429_MS after, and tells the pacer at once", async () => {
    const budget = new IsolateBudget();
    const pacer = recordingPacer();
    budget.noteUpstream({ ok: false, permanent: false, status: 429, error: "rate-limited", retryAfterSeconds: 3 });
    expect(budget.pausedUntil()).toBe(T0 + 3000);
    budget.reportInline(429, "default", undefined, pacer, later);
    expect(pacer.syncs.at(-1)).toMatchObject({ pausedUntil: T0 + 3000, rateLimited: 1 });
    expect(budget.coalescing("default", MAX_RPS, undefined, later)).toBe("budget");
    vi.setSystemTime(T0 + 3000 + RECENT_429_MS - 1);
    expect(budget.coalescing("default", MAX_RPS, undefined, later)).toBe("budget");
    vi.setSystemTime(T0 + 3000 + RECENT_429_MS + 1000);
    expect(budget.coalescing("default", MAX_RPS, undefined, later)).toBeUndefined();
  });

  it("counts upstream requests and 429s for /healthz", () => {
    const budget = new IsolateBudget();
    budget.noteUpstream({ ok: true, status: 200, body: { activities: [] } });
    budget.noteUpstream({ ok: false, permanent: false, status: 429, error: "rate-limited" });
    const stats = budget.stats();
    expect(stats.upstream_requests_last_10s.at(-1)).toBe(2);
    expect(stats.rate_limited_last_minute).toBe(1);
    expect(stats.paused_until).toBe(new Date(T0 + 10_000).toISOString());
  });

  it("spaces a pacer-less consumer's requests 1/ORTTO_MAX_RPS apart, after any pause", () => {
    const budget = new IsolateBudget();
    budget.noteUpstream({ ok: false, permanent: false, status: 429, error: "rate-limited", retryAfterSeconds: 2 });
    expect([budget.localSlot(MAX_RPS), budget.localSlot(MAX_RPS), budget.localSlot(MAX_RPS)]).toEqual([T0 + 2000, T0 + 2100, T0 + 2200]);
  });
});

describe("Ortto's 4xx and refused keys", () => {
  it("opens the refusals window for 15 s after a 4xx: inline sends ask for a permit first", () => {
    const budget = new IsolateBudget();
    budget.noteUpstream({ ok: false, permanent: true, status: 400, error: "bad" });
    expect(budget.mustAskPacer(undefined)).toBe(true);
    vi.advanceTimersByTime(REFUSAL_WINDOW_MS);
    expect(budget.mustAskPacer(undefined)).toBe(false);
  });

  it("has a fresh isolate ask the pacer before its first inline send, and not once it has heard", async () => {
    const budget = new IsolateBudget();
    const pacer = recordingPacer();
    expect(budget.mustAskPacer(pacer)).toBe(true);
    expect(await budget.admitInline("default", 6000, 500, pacer, later)).toEqual({ permit: "p1" });
    expect(budget.mustAskPacer(pacer)).toBe(false);
  });

  it("queues for the refusals window when the pacer does not answer within the wait it is given (PACER_TIMEOUT_MS)", async () => {
    const budget = new IsolateBudget();
    const pacer = recordingPacer();
    pacer.admit.mockImplementation(() => new Promise(() => {}));
    let settled: unknown;
    void budget.admitInline("default", 6000, 300, pacer, later).then((a) => (settled = a));
    await vi.advanceTimersByTimeAsync(299);
    expect(settled).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(settled).toEqual({ queue: "refusals" });
  });

  it("keeps its own window without a pacer: at most MAX_REFUSALS permits in flight or refused", () => {
    const budget = new IsolateBudget();
    const permits = Array.from({ length: MAX_REFUSALS + 1 }, () => budget.admitLocally(6000));
    expect(permits.filter((p) => "permit" in p)).toHaveLength(MAX_REFUSALS);
    expect(permits.at(-1)).toHaveProperty("retryAtMs");
  });

  it("opens a site's circuit on a refused key: its page batches queue with the reason, until the key works", () => {
    const budget = new IsolateBudget();
    budget.reportInline(401, "shop", undefined, undefined, later);
    expect(budget.coalescing("shop", MAX_RPS, undefined, later)).toBe(KEY_REFUSED_REASON);
    expect(budget.circuits()).toHaveProperty("shop.upstream_status", 401);
    budget.noteKeyWorks("shop");
    vi.advanceTimersByTime(1000);
    expect(budget.coalescing("shop", MAX_RPS, undefined, later)).toBeUndefined();
  });

  it("gives a permit back when the send was not refused, and reports a refusal with its permit", async () => {
    const budget = new IsolateBudget();
    const pacer = recordingPacer();
    budget.reportInline(200, "default", "p1", pacer, later);
    expect(pacer.succeeded).toHaveBeenCalledWith({ permit: "p1" });
    budget.reportInline(400, "default", "p2", pacer, later);
    expect(pacer.refused).toHaveBeenCalledWith({ status: 400, site: "default", permit: "p2" });
    await vi.advanceTimersByTimeAsync(0);
    expect(budget.refusalWindowOpen()).toBe(true);
  });
});
