/**
 * The counts' way through for a request whose counters this isolate has never seen (each asked for
 * one member: a server's batch of new people), held to the rounds every other request takes: the
 * same request with one more counter of two members (which no shortcut takes) must get the same
 * verdict, and leave the counts answering the same from then on. On fake timers, against a ledger
 * in memory that counts as the `LimitLedger` objects do.
 */
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type Ask, FLUSH_DELAY_MS, type LedgerPort, LimitCounts, REPORT_AT, type Verdict } from "../../worker/limits/counts.ts";
import type { LedgerCount } from "../../worker/limits/ledger-object.ts";
import { ledgerCounting } from "../fixtures/memory-ledger.ts";

const T0 = Date.UTC(2026, 11, 6, 10);
/** A short window, so that first sightings run out within a run. */
const WINDOW = 1000;

/** The shard objects' counting, in memory (test/fixtures/memory-ledger.ts), its calls counted. */
function memoryLedger(): LedgerPort & { calls: number } {
  const count = ledgerCounting();
  const ledger = {
    calls: 0,
    async sync(_shard: number, entries: Parameters<LedgerPort["sync"]>[1]): Promise<LedgerCount[]> {
      ledger.calls++;
      return count(entries);
    },
  };
  return ledger;
}

/** A verdict as the relay reads it, the extra counter left out. */
const seen = (verdict: Verdict) =>
  verdict.ok
    ? verdict
    : {
        ok: false,
        key: verdict.ask.key,
        retryAfterSeconds: verdict.retryAfterSeconds,
        temporary: verdict.temporary,
        full: verdict.full?.filter((f) => !f.ask.key.startsWith("extra")).map((f) => [f.ask.key, f.over, f.retryAfterSeconds]),
      };

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
  vi.spyOn(console, "log").mockImplementation(() => {});
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("a request of counters this isolate has never seen", () => {
  it("admits a batch of new people without a ledger call, each then counted from its first event", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    const batch = (n: number): Ask[] =>
      Array.from({ length: 100 }, (_, i) => ({ key: `p${i}`, limit: 2, window: WINDOW, members: [`e${n}`] }));
    expect(await counts.admit(ledger, batch(1))).toEqual({ ok: true, report: false });
    expect(ledger.calls).toBe(0);
    // The same events again pass as re-sends; a second event each fits the limit of 2; a third does not.
    expect((await counts.admit(ledger, batch(1))).ok).toBe(true);
    expect((await counts.admit(ledger, batch(2))).ok).toBe(true);
    expect(await counts.admit(ledger, batch(3))).toMatchObject({ ok: false, ask: { key: "p0" } });
  });

  it("refuses a never-seen counter whose limit is 0, as any other", async () => {
    const counts = new LimitCounts();
    const verdict = await counts.admit(memoryLedger(), [{ key: "p", limit: 0, window: WINDOW, members: ["e"] }]);
    expect(verdict).toMatchObject({ ok: false, ask: { key: "p" } });
    expect(verdict.ok === false && verdict.temporary).toBeFalsy();
  });

  it("decides as the rounds decide, whatever came before (property)", async () => {
    const keys = ["a", "b", "c", "d", "e", "f"];
    const request = fc.uniqueArray(
      fc.record({
        key: fc.constantFrom(...keys),
        limit: fc.constantFrom(0, 1, 2, 3, 50),
        members: fc.oneof(
          { weight: 4, arbitrary: fc.constantFrom("m1", "m2", "m3", "m4").map((m) => [m]) },
          { weight: 1, arbitrary: fc.uniqueArray(fc.constantFrom("m1", "m2", "m3", "m4"), { minLength: 2, maxLength: 3 }) },
        ),
      }),
      { selector: (ask) => ask.key, minLength: 1, maxLength: 4 },
    );
    const step = fc.oneof(
      { weight: 4, arbitrary: request.map((asks) => ({ asks })) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: WINDOW + 200 }).map((ms) => ({ ms })) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 40 }), async (steps) => {
        vi.setSystemTime(T0);
        const [plain, rounds] = [new LimitCounts(), new LimitCounts()];
        const [plainLedger, roundsLedger] = [memoryLedger(), memoryLedger()];
        for (const [n, s] of steps.entries()) {
          if ("ms" in s) {
            await vi.advanceTimersByTimeAsync(s.ms);
            continue;
          }
          const asks: Ask[] = s.asks.map((a) => ({ ...a, window: WINDOW, members: [...a.members] }));
          // The same request with a counter of two members, of its own: it takes every round.
          const extra: Ask = { key: `extra${n}`, limit: REPORT_AT * 10, window: WINDOW, members: ["x1", "x2"] };
          const a = await plain.admit(plainLedger, asks);
          const b = await rounds.admit(roundsLedger, [...asks.map((ask) => ({ ...ask, members: [...ask.members] })), extra]);
          expect(seen(a)).toEqual(seen(b));
          if (a.ok && a.report) void plain.flushSoon(plainLedger);
          if (b.ok && b.report) void rounds.flushSoon(roundsLedger);
          await vi.advanceTimersByTimeAsync(FLUSH_DELAY_MS);
        }
      }),
      { numRuns: 300 },
    );
  });
});
