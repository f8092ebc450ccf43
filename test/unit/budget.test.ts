import { describe, expect, it } from "vitest";
import { BudgetLedger, LEASE_MS, RECENT_429_MS } from "../../worker/budget/seconds.ts";

const T0 = 1_700_000_000_000; // the start of a second
const report = (isolate: string, demand = 1, extra = {}) => ({ isolate, demand, inlineNow: 0, unleased: [], ...extra });

/** Takes `n` queue slots as a consumer would (one after the other, each at its time) and returns their times. */
function takeSlots(ledger: BudgetLedger, n: number, now = T0): number[] {
  const times: number[] = [];
  let clock = now;
  for (let i = 0; i < n; i++) {
    const slot = ledger.slot(clock, 60_000);
    if (!("at" in slot)) throw new Error("no slot");
    times.push(slot.at);
    clock = slot.at;
  }
  return times;
}

function perSecond(times: number[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const t of times) counts[Math.floor(t / 1000)] = (counts[Math.floor(t / 1000)] ?? 0) + 1;
  return counts;
}

describe("the account's budget ledger", () => {
  it("gives the queue at most maxRps slots a calendar second, spread through the second", () => {
    const ledger = new BudgetLedger(10);
    const times = takeSlots(ledger, 35);
    expect(Object.values(perSecond(times))).toEqual([10, 10, 10, 5]);
    expect(times.slice(0, 10).map((t) => t - T0)).toEqual([0, 100, 200, 300, 400, 500, 600, 700, 800, 900]);
  });

  it("starts a slot only where it can arrive within its second", () => {
    const ledger = new BudgetLedger(10);
    const slot = ledger.slot(T0 + 980, 60_000);
    expect(slot).toEqual({ at: T0 + 1000, deadline: T0 + 2000 - 50 });
  });

  it("gives no slot before a pause ends, and says how long it is when it exceeds the wait", () => {
    const ledger = new BudgetLedger(10);
    ledger.pause(T0 + 5_000, T0);
    expect(ledger.slot(T0, 60_000)).toMatchObject({ at: T0 + 5_000 });
    expect(ledger.slot(T0, 1_000)).toEqual({ retryAfterMs: 5_000 });
  });

  it("leases inline sends to a quiet isolate and keeps them out of the queue's slots", () => {
    const ledger = new BudgetLedger(10);
    const answer = ledger.sync(report("a", 1), T0);
    expect(answer).toMatchObject({ perSecond: 2, until: T0 + LEASE_MS, shortUntil: 0 });
    // The queue gets what is left of each second.
    expect(Object.values(perSecond(takeSlots(ledger, 16)))).toEqual([8, 8]);
  });

  it("replaces an isolate's lease rather than adding to it, and caps all leases at half the budget", () => {
    const ledger = new BudgetLedger(10);
    for (let i = 0; i < 5; i++) ledger.sync(report("a", 2), T0 + i);
    expect(ledger.stats(T0 + 10)).toMatchObject({ inline_leases: 1, inline_per_second: 4 });
    expect(ledger.sync(report("b", 2), T0 + 20).perSecond).toBe(1);
    expect(ledger.sync(report("c", 2), T0 + 30).perSecond).toBe(0);
  });

  it("tells a busy isolate to coalesce: its own rate is over the inline share", () => {
    const ledger = new BudgetLedger(10);
    const answer = ledger.sync(report("a", 40), T0);
    expect(answer.perSecond).toBe(0);
    expect(answer.shortUntil).toBeGreaterThan(T0);
  });

  it("after a 429 pauses every sender and keeps page batches coalescing for a while after", () => {
    const ledger = new BudgetLedger(10);
    const answer = ledger.sync(report("a", 1, { pausedUntil: T0 + 2_000, rateLimited: 1 }), T0);
    expect(answer).toMatchObject({ perSecond: 0, pausedUntil: T0 + 2_000, shortUntil: T0 + 2_000 + RECENT_429_MS });
    expect(ledger.stats(T0)).toMatchObject({ rate_limited: 1 });
  });

  it("never gives a calendar second more than the budget, whatever mix of leases, inline sends and queue slots", () => {
    for (let seed = 1; seed <= 20; seed++) {
      let s = seed;
      const random = () => {
        s = (s * 1103515245 + 12345) % 2 ** 31;
        return s / 2 ** 31;
      };
      const ledger = new BudgetLedger(10);
      const sent = new Map<number, number>();
      const count = (t: number) => sent.set(Math.floor(t / 1000), (sent.get(Math.floor(t / 1000)) ?? 0) + 1);
      const leases = new Map<string, { perSecond: number; until: number; second: number; used: number }>();
      for (let now = T0; now < T0 + 30_000; now += Math.floor(random() * 120)) {
        const isolate = `i${Math.floor(random() * 4)}`;
        const r = random();
        if (r < 0.3) {
          const slot = ledger.slot(now, 60_000);
          if ("at" in slot) count(slot.at);
        } else if (r < 0.4) {
          const lease = leases.get(isolate);
          const second = Math.floor(now / 1000);
          const inlineNow = lease && lease.second === second ? lease.used : 0;
          const answer = ledger.sync(report(isolate, Math.floor(random() * 6), { inlineNow }), now);
          leases.set(isolate, { perSecond: answer.perSecond, until: answer.until, second, used: inlineNow });
        } else {
          // An inline send within the isolate's lease, as gate.ts allows it.
          const lease = leases.get(isolate);
          const second = Math.floor(now / 1000);
          if (!lease || now >= lease.until) continue;
          if (lease.second !== second) Object.assign(lease, { second, used: 0 });
          if (lease.used < lease.perSecond) {
            lease.used++;
            count(now);
          }
        }
      }
      expect(Math.max(...sent.values())).toBeLessThanOrEqual(10);
    }
  });
});
