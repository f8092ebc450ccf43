/**
 * The bound across isolates (worker/limits/counts.ts): I isolates admit at most
 * limit + UNSYNCED_MAX × (I − 1) distinct members of one counter, one isolate exactly the limit,
 * however their requests race each other, the reports (FLUSH_DELAY_MS) and a ledger that answers
 * late or not within LEDGER_TIMEOUT_MS. On fake timers, against a ledger in memory that counts as
 * the `LimitLedger` objects do (probes answered before the call's members are recorded).
 */
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type Ask, FLUSH_DELAY_MS, LEDGER_TIMEOUT_MS, type LedgerPort, LimitCounts, UNSYNCED_MAX } from "../../worker/limits/counts.ts";
import type { LedgerCount } from "../../worker/limits/ledger-object.ts";
import { ledgerCounting } from "../fixtures/memory-ledger.ts";

const DAY = 24 * 60 * 60 * 1000;
const T0 = Date.UTC(2026, 11, 6, 10);

/** The shard objects' counting, answering after `latency()` ms. */
function memoryLedger(latency: () => number): LedgerPort {
  const count = ledgerCounting();
  return {
    async sync(_shard, entries): Promise<LedgerCount[]> {
      const ms = latency();
      if (ms) await new Promise((resolve) => setTimeout(resolve, ms));
      return count(entries);
    },
  };
}

/** Advances the fake clock until `promise` settles. */
async function settled(promise: Promise<unknown>) {
  let done = false;
  void promise.then(() => {
    done = true;
  });
  while (!done) await vi.advanceTimersByTimeAsync(50);
}

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
  vi.spyOn(console, "log").mockImplementation(() => {});
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("a counter reached through several isolates", () => {
  it("counts exactly in one isolate when a report times out after a later one was delivered: the members it held are reported again", async () => {
    let latency = LEDGER_TIMEOUT_MS + 100;
    const ledger = memoryLedger(() => latency);
    const counts = new LimitCounts();
    const ask = (members: string[]): Ask[] => [{ key: "c", limit: 5, window: DAY, members }];
    const admitted: string[] = [];
    const send = (members: string[]) =>
      counts.admit(ledger, ask(members)).then((verdict) => {
        if (verdict.ok) admitted.push(...members);
      });
    await settled(send(["m0", "m1"]));
    await settled(send(["m2", "m3"]));
    // At the limit as the isolate sees it: this request's wait reports m0–m3 to a ledger that answers too late.
    const late = send(["m4", "m5"]);
    await vi.advanceTimersByTimeAsync(1);
    latency = 0;
    await settled(send(["m6"])); // the fifth: admitted on the isolate's view
    // Each of these waits for the ledger, which has m6 delivered and, until the late call lands, not m0–m3.
    for (let k = 7; k < 17; k++) await settled(send([`m${k}`]));
    await settled(late);
    expect(admitted).toEqual(["m0", "m1", "m2", "m3", "m6"]);
  });

  it("admits a member below the limit when a report times out while a later one of the counter is answered: their members count once", async () => {
    let latency = 0;
    const ledger = memoryLedger(() => latency);
    const counts = new LimitCounts();
    const ask = (members: string[]): Ask[] => [{ key: "c", limit: 12, window: DAY, members }];
    for (let k = 0; k < 7; k++) expect((await counts.admit(ledger, ask([`m${k}`]))).ok).toBe(true);
    // Their report reaches a ledger that answers long after LEDGER_TIMEOUT_MS.
    latency = 10 * LEDGER_TIMEOUT_MS;
    const flushed = counts.flushSoon(ledger);
    await vi.advanceTimersByTimeAsync(FLUSH_DELAY_MS + 200);
    for (let k = 7; k < 10; k++) expect((await counts.admit(ledger, ask([`m${k}`]))).ok).toBe(true);
    // The eleventh of 12 is one more than the isolate may hold unanswered: it waits for a call the
    // ledger answers after the report's timeout, then counts the 10 held here once.
    latency = LEDGER_TIMEOUT_MS - 50;
    const eleventh = counts.admit(ledger, ask(["m10"]));
    await vi.advanceTimersByTimeAsync(LEDGER_TIMEOUT_MS);
    expect(await eleventh).toMatchObject({ ok: true });
    await settled(flushed);
  });

  it("admits a member below the limit when a report that timed out reaches the ledger after all: its members count once", async () => {
    let latency = 0;
    const ledger = memoryLedger(() => latency);
    const counts = new LimitCounts();
    const ask = (members: string[]): Ask[] => [{ key: "c", limit: 12, window: DAY, members }];
    for (let k = 0; k < 7; k++) expect((await counts.admit(ledger, ask([`m${k}`]))).ok).toBe(true);
    // Their report reaches the ledger 100 ms after LEDGER_TIMEOUT_MS, and its answer is applied.
    latency = LEDGER_TIMEOUT_MS + 100;
    const flushed = counts.flushSoon(ledger);
    await vi.advanceTimersByTimeAsync(FLUSH_DELAY_MS + 200);
    for (let k = 7; k < 10; k++) expect((await counts.admit(ledger, ask([`m${k}`]))).ok).toBe(true);
    // The eleventh waits for a call answered after that (the ledger then counts all 10).
    latency = LEDGER_TIMEOUT_MS - 50;
    const eleventh = counts.admit(ledger, ask(["m10"]));
    await vi.advanceTimersByTimeAsync(LEDGER_TIMEOUT_MS);
    expect(await eleventh).toMatchObject({ ok: true });
    await settled(flushed);
  });

  it("holds UNSYNCED_MAX members of a counter while the ledger does not answer, however many of its reports time out together", async () => {
    let latency = 0;
    const ledger = memoryLedger(() => latency);
    const counts = new LimitCounts();
    const ask = (members: string[]): Ask[] => [{ key: "c", limit: 50, window: DAY, members }];
    const admitted: string[] = [];
    const send = (members: string[]) =>
      counts.admit(ledger, ask(members)).then((verdict) => {
        if (verdict.ok) admitted.push(...members);
      });
    for (let k = 0; k < 7; k++) await send([`m${k}`]);
    await settled(counts.flushSoon(ledger)); // delivered
    latency = 20 * LEDGER_TIMEOUT_MS;
    for (let k = 7; k < 14; k++) await send([`m${k}`]);
    // m7–m13 go in a report that times out; m14 in the call of a request that waits (11 unanswered), which times out too.
    const flushed = counts.flushSoon(ledger);
    await vi.advanceTimersByTimeAsync(FLUSH_DELAY_MS + 1);
    await send(["m14"]);
    await settled(Promise.all([flushed, send(["m15", "m16", "m17"])]));
    for (let k = 18; k < 22; k++) await settled(send([`m${k}`]));
    expect(admitted).toEqual([...Array.from({ length: 15 }, (_, k) => `m${k}`), "m18", "m19"]);
  });

  it("counts exactly in one isolate when the first member of a report that times out leaves the window meanwhile", async () => {
    const HOUR = 60 * 60 * 1000;
    let latency = 0;
    const ledger = memoryLedger(() => latency);
    const counts = new LimitCounts();
    const ask = (members: string[]): Ask[] => [{ key: "c", limit: 6, window: HOUR, members }];
    const admitted: string[] = [];
    const send = (members: string[]) =>
      counts.admit(ledger, ask(members)).then((verdict) => {
        if (verdict.ok) admitted.push(...members);
      });
    await send(["m0"]);
    await vi.advanceTimersByTimeAsync(300);
    await send(["m1"]);
    vi.setSystemTime(T0 + HOUR - 1000);
    await send(["m2", "m3"]);
    vi.setSystemTime(T0 + HOUR - 400);
    // Over the limit as the isolate sees it: this request reports m0–m3 to a ledger that answers too late.
    latency = LEDGER_TIMEOUT_MS + 100;
    const late = send(["m4", "m5", "m6"]);
    await vi.advanceTimersByTimeAsync(1);
    latency = 0;
    await send(["m7"]);
    await send(["m8"]);
    await send(["m9"]); // waits: reports m7 and m8, delivered at once; refused
    await vi.advanceTimersByTimeAsync(449); // m0 has left the window
    await send(["m10"]); // refused, on the ledger's count
    await vi.advanceTimersByTimeAsync(50); // the report of m0–m3 times out
    await vi.advanceTimersByTimeAsync(10);
    // m1–m3, m7 and m8 are in the window: room for one more.
    await send(["m11"]);
    await send(["m12"]);
    await settled(late);
    expect(admitted).toEqual(["m0", "m1", "m2", "m3", "m7", "m8", "m11"]);
  });

  it("admits at most limit + UNSYNCED_MAX × (I − 1) distinct members, however requests race the reports and a slow ledger (property)", {
    timeout: 60_000,
  }, async () => {
    // A burst: `requests` requests to one isolate, each with `members` members of the counter (new, or
    // the first a re-send of one admitted before) and perhaps a never-seen counter beside it, sent one
    // after another or all at once, the ledger answering after `latency` ms; then `pause` ms.
    const burst = fc.record({
      isolate: fc.nat(3),
      requests: fc.integer({ min: 1, max: 25 }),
      members: fc.integer({ min: 1, max: 3 }),
      resend: fc.boolean(),
      beside: fc.boolean(),
      together: fc.boolean(),
      latency: fc.constantFrom(0, 10, 90, 200, LEDGER_TIMEOUT_MS + 100),
      pause: fc.constantFrom(0, 0, 5, 50, 100, 150, 700),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom(1, 2, 5, 12, 50),
        fc.array(burst, { minLength: 1, maxLength: 30 }),
        async (I, limit, bursts) => {
          vi.setSystemTime(T0);
          let latency = 0;
          const ledger = memoryLedger(() => latency);
          const isolates = Array.from({ length: I }, () => new LimitCounts());
          const admitted = new Set<string>();
          let next = 0;
          const pending: Promise<void>[] = [];
          for (const b of bursts) {
            latency = b.latency;
            const counts = isolates[b.isolate % I] as LimitCounts;
            for (let r = 0; r < b.requests; r++) {
              const members = Array.from({ length: b.members }, (_, k) =>
                b.resend && k === 0 && admitted.size ? ([...admitted][next % admitted.size] as string) : `m${next++}`,
              );
              const asks: Ask[] = [{ key: "c", limit, window: DAY, members }];
              if (b.beside) asks.push({ key: `other${next++}`, limit: 50, window: DAY, members: ["x"] });
              const request = counts.admit(ledger, asks).then((verdict) => {
                if (!verdict.ok) return;
                for (const m of members) admitted.add(m);
                if (verdict.report) void counts.flushSoon(ledger);
              });
              pending.push(request);
              if (!b.together) await settled(request);
            }
            if (b.pause) await vi.advanceTimersByTimeAsync(b.pause);
          }
          await settled(Promise.all(pending));
          expect(admitted.size).toBeLessThanOrEqual(limit + UNSYNCED_MAX * (I - 1));
        },
      ),
      { numRuns: 500 },
    );
  });
});
