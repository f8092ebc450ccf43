/**
 * An isolate's counting toward the limits (worker/limits/counts.ts) against an in-memory ledger
 * that counts as the `LimitLedger` objects do, on fake timers: the ledger's timeout, the report
 * cadence and the windows play out without waiting. The wiring through the relay (workerd, the
 * real ledger) is in test/worker/limits.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  type Ask,
  BUSY_RETRY_SECONDS,
  FLUSH_DELAY_MS,
  LEDGER_TIMEOUT_MS,
  type LedgerPort,
  LimitCounts,
  MEMBER_CHARS,
  REPORT_AT,
  UNSYNCED_MAX,
  type Verdict,
} from "../../worker/limits/counts.ts";
import type { LedgerCount, LedgerEntry } from "../../worker/limits/ledger-object.ts";
import { ledgerCounting } from "../fixtures/memory-ledger.ts";

const DAY = 24 * 60 * 60 * 1000;
const T0 = Date.UTC(2026, 11, 6, 10);

/** The shard objects' counting, in memory (test/fixtures/memory-ledger.ts), with its calls logged and outages on demand. */
function memoryLedger() {
  const count = ledgerCounting();
  const calls: LedgerEntry[][] = [];
  const ledger: LedgerPort & { calls: LedgerEntry[][]; down?: "fails" | "silent" | "answer lost" } = {
    calls,
    async sync(_shard, entries): Promise<LedgerCount[]> {
      if (ledger.down === "fails") throw new Error("Durable Object unavailable");
      if (ledger.down === "silent") return new Promise(() => {});
      if (ledger.down === "answer lost") {
        ledger.down = undefined;
        void ledger.sync(_shard, entries);
        return new Promise(() => {});
      }
      calls.push(entries);
      return count(entries);
    },
  };
  return ledger;
}

const ask = (key: string, member: string, limit = 50, window = DAY): Ask => ({ key, limit, window, members: [member] });

/** Admits, and reports to the ledger when the verdict says a report is due (as the relay does after its answer). */
async function admitted(counts: LimitCounts, ledger: LedgerPort, asks: Ask[]): Promise<Verdict> {
  const verdict = await counts.admit(ledger, asks);
  if (verdict.ok && verdict.report) {
    const flushed = counts.flushSoon(ledger);
    await vi.advanceTimersByTimeAsync(FLUSH_DELAY_MS);
    await flushed;
  }
  return verdict;
}

beforeEach(() => {
  vi.useFakeTimers({ now: T0 });
  vi.spyOn(console, "log").mockImplementation(() => {});
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("one isolate's counts", () => {
  it("admits up to the limit, then refuses until the oldest member leaves the window", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    for (let i = 0; i < 3; i++) expect((await admitted(counts, ledger, [ask("c", `m${i}`, 3)])).ok).toBe(true);
    const refused = await admitted(counts, ledger, [ask("c", "m3", 3)]);
    expect(refused).toMatchObject({ ok: false, retryAfterSeconds: DAY / 1000 });
    expect(refused.ok === false && refused.temporary).toBeFalsy();
    // A day later the window has passed: the counter takes members again.
    vi.setSystemTime(T0 + DAY + 1);
    expect((await admitted(counts, ledger, [ask("c", "m4", 3)])).ok).toBe(true);
  });

  it("lets a re-sent member through without counting it again", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    for (let i = 0; i < 2; i++) expect((await admitted(counts, ledger, [ask("c", `m${i}`, 2)])).ok).toBe(true);
    expect((await admitted(counts, ledger, [ask("c", "m1", 2)])).ok).toBe(true);
    expect((await admitted(counts, ledger, [ask("c", "m2", 2)])).ok).toBe(false);
  });

  it("counts a refused request nowhere: all of its counters or none", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    expect((await admitted(counts, ledger, [ask("full", "a", 1)])).ok).toBe(true);
    expect((await admitted(counts, ledger, [ask("other", "x", 2), ask("full", "b", 1)])).ok).toBe(false);
    // "other" counted nothing of the refused request: two fresh members still fit.
    expect((await admitted(counts, ledger, [ask("other", "y", 2)])).ok).toBe(true);
    expect((await admitted(counts, ledger, [ask("other", "z", 2)])).ok).toBe(true);
  });

  it("reports a counter's members in groups of REPORT_AT, not one call per event", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    for (let i = 0; i < 3 * REPORT_AT + 2; i++) expect((await admitted(counts, ledger, [ask("c", `m${i}`)])).ok).toBe(true);
    expect(ledger.calls.map((entries) => entries.reduce((n, e) => n + e.add.length, 0))).toEqual([REPORT_AT, REPORT_AT, REPORT_AT]);
  });

  it("reports FLUSH_DELAY_MS after the first request that asks, in one flush for every request that asks meanwhile", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    const reports: Promise<void>[] = [];
    for (const key of ["a", "b"])
      for (let i = 0; i < REPORT_AT; i++) {
        const verdict = await counts.admit(ledger, [ask(key, `m${i}`)]);
        if (verdict.ok && verdict.report) reports.push(counts.flushSoon(ledger));
      }
    expect(reports).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(FLUSH_DELAY_MS - 1);
    expect(ledger.calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    await Promise.all(reports);
    // One flush: a call for each shard the two counters fall in, both counters' members in them.
    expect(ledger.calls.flat().map((e) => e.add.length)).toEqual([REPORT_AT, REPORT_AT]);
  });

  it("counts again, in a counter of many members, the re-sent members whose time ran out, and only those", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    const STEP = DAY / 48;
    // 4 × REPORT_AT events half an hour apart: four reports of REPORT_AT.
    const all = Array.from({ length: 4 * REPORT_AT }, (_, i) => `m${i}`);
    for (const [i, m] of all.entries()) {
      vi.setSystemTime(T0 + i * STEP);
      expect((await admitted(counts, ledger, [ask("c", m)])).ok).toBe(true);
    }
    // A day after the REPORT_ATth: the first REPORT_AT left the window, the rest remain; all sent again, then each once more.
    vi.setSystemTime(T0 + DAY + (REPORT_AT - 0.5) * STEP);
    expect((await admitted(counts, ledger, [{ key: "c", limit: 50, window: DAY, members: all }])).ok).toBe(true);
    for (const m of all) expect((await admitted(counts, ledger, [ask("c", m)])).ok).toBe(true);
    // Reported (hashed): four groups of REPORT_AT, then the first REPORT_AT again.
    const reports = ledger.calls.map((entries) => entries.flatMap((e) => e.add.map(([m]) => m)));
    expect(reports.map((r) => r.length)).toEqual(Array(5).fill(REPORT_AT));
    expect(reports[4]).toEqual(reports[0]);
  });

  it("sends a counter's key to the ledger as 32 hex digits of its hash, and each member as the first MEMBER_CHARS", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    for (let i = 0; i < 2 * REPORT_AT; i++) await admitted(counts, ledger, [ask("c", `m${i}`)]);
    const entries = ledger.calls.flat();
    expect(entries).toHaveLength(2);
    for (const { key, add } of entries) {
      expect(key).toMatch(/^[0-9a-f]{32}$/);
      for (const [member] of add) expect(member).toMatch(new RegExp(`^[0-9a-f]{${MEMBER_CHARS}}$`));
    }
    // One counter, the same key each time; 2 × REPORT_AT distinct members.
    expect(entries[1]?.key).toBe(entries[0]?.key);
    expect(new Set(entries.flatMap((e) => e.add.map(([m]) => m))).size).toBe(2 * REPORT_AT);
  });

  it("costs the ledger nothing for a visitor with fewer than REPORT_AT events", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    for (let i = 0; i < REPORT_AT - 1; i++) await admitted(counts, ledger, [ask("few", `m${i}`)]);
    expect(ledger.calls).toEqual([]);
  });
});

describe("when the ledger cannot answer", () => {
  it("holds at most UNSYNCED_MAX unreported members of a counter, and refuses the rest for a moment", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    ledger.down = "fails";
    const verdicts: Verdict[] = [];
    for (let i = 0; i < UNSYNCED_MAX + 5; i++) verdicts.push(await admitted(counts, ledger, [ask("c", `m${i}`)]));
    expect(verdicts.filter((v) => v.ok)).toHaveLength(UNSYNCED_MAX);
    for (const refused of verdicts.filter((v) => !v.ok))
      expect(refused).toMatchObject({ temporary: true, retryAfterSeconds: BUSY_RETRY_SECONDS });
  });

  it("holds at most UNSYNCED_MAX members of a counter unanswered however long its report waits: the next waits for the ledger", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    // Reports fall due but no time passes, so none is flushed: only a request that waits reaches the ledger.
    for (let i = 0; i < UNSYNCED_MAX; i++) expect((await counts.admit(ledger, [ask("c", `m${i}`)])).ok).toBe(true);
    expect(ledger.calls).toHaveLength(0);
    expect((await counts.admit(ledger, [ask("c", "one more")])).ok).toBe(true);
    // That request waited for a call that reported the UNSYNCED_MAX members held here before it was admitted.
    expect(ledger.calls.flat().reduce((n, e) => n + e.add.length, 0)).toBe(UNSYNCED_MAX);
  });

  it("decides on its own view once the ledger has not answered within LEDGER_TIMEOUT_MS", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    ledger.down = "silent";
    const verdict = counts.admit(ledger, [
      { key: "c", limit: 50, window: DAY, members: Array.from({ length: UNSYNCED_MAX + 1 }, (_, i) => `m${i}`) },
    ]);
    let settled: Verdict | undefined;
    void verdict.then((v) => {
      settled = v;
    });
    await vi.advanceTimersByTimeAsync(LEDGER_TIMEOUT_MS - 1);
    expect(settled).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(settled).toMatchObject({ ok: false, temporary: true });
  });

  it("sends what it could not report with the next report, so the ledger loses no count", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    ledger.down = "fails";
    for (let i = 0; i < REPORT_AT; i++) await admitted(counts, ledger, [ask("c", `m${i}`, 12)]);
    ledger.down = undefined;
    await admitted(counts, ledger, [ask("c", "next", 12)]);
    // One report: the REPORT_AT members it could not send, with the new one.
    expect(ledger.calls.map((entries) => entries.reduce((n, e) => n + e.add.length, 0))).toEqual([REPORT_AT + 1]);
  });

  it("keeps a contact's limit exact after a ledger call whose answer was lost (the ledger did record it)", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    ledger.down = "answer lost";
    for (let i = 0; i < REPORT_AT; i++) expect((await counts.admit(ledger, [ask("c", `m${i}`, 10)])).ok).toBe(true);
    const flushed = counts.flushSoon(ledger);
    await vi.advanceTimersByTimeAsync(FLUSH_DELAY_MS + LEDGER_TIMEOUT_MS);
    await flushed;
    let more = 0;
    for (let i = 0; i < 10; i++) if ((await admitted(counts, ledger, [ask("c", `n${i}`, 10)])).ok) more++;
    expect(REPORT_AT + more).toBe(10);
  });

  it("asks the ledger again about a full counter it dropped from memory, so it still refuses", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    for (let i = 0; i < 3; i++) await admitted(counts, ledger, [ask("full", `m${i}`, 3)]);
    expect((await admitted(counts, ledger, [ask("full", "m3", 3)])).ok).toBe(false);
    // 20,000 other counters of two members each push it out of this isolate's memory.
    for (let i = 0; i < 20_000; i++) await counts.admit(ledger, [{ key: `other-${i}`, limit: 50, window: DAY, members: ["a", "b"] }]);
    expect((await admitted(counts, ledger, [ask("full", "m4", 3)])).ok).toBe(false);
  });
});

describe("an isolate whose memory of counters is full", () => {
  it("keeps a counter exact when the request counting into it also makes the counter that fills memory", async () => {
    const counts = new LimitCounts();
    const ledger = memoryLedger();
    const limit = 2 * REPORT_AT + 1;
    // A contact's 2 × REPORT_AT events, all reported: the ledger counts them, and this isolate's counter is the least recently used.
    for (let i = 0; i < 2 * REPORT_AT; i++) expect((await admitted(counts, ledger, [ask("visitor", `m${i}`, limit)])).ok).toBe(true);
    expect(ledger.calls).toHaveLength(2);
    for (let i = 0; i < 19_999; i++) await counts.admit(ledger, [{ key: `other-${i}`, limit: 50, window: DAY, members: ["a", "b"] }]);
    // Its last event within the limit comes with a new counter (another activity's second event), made first: memory is full.
    const last = await admitted(counts, ledger, [
      { key: "newcomer", limit: 50, window: DAY, members: ["a", "b"] },
      ask("visitor", `m${2 * REPORT_AT}`, limit),
    ]);
    expect(last.ok).toBe(true);
    // The limit is reached: every further event is refused.
    let more = 0;
    for (let i = 0; i < REPORT_AT; i++) if ((await admitted(counts, ledger, [ask("visitor", `late${i}`, limit)])).ok) more++;
    expect(more).toBe(0);
  });
});

describe("isolates sharing the ledger", () => {
  it("let at most limit + UNSYNCED_MAX × (isolates − 1) through, once the ledger has heard", async () => {
    const ledger = memoryLedger();
    const isolates = 4;
    let accepted = 0;
    let n = 0;
    for (let i = 0; i < isolates; i++) {
      const counts = new LimitCounts();
      for (let j = 0; j < 30; j++) if ((await admitted(counts, ledger, [ask("c", `m${n++}`)])).ok) accepted++;
    }
    expect(accepted).toBeGreaterThanOrEqual(50);
    expect(accepted).toBeLessThanOrEqual(50 + UNSYNCED_MAX * (isolates - 1));
  });

  it("a new isolate learns from the ledger that a counter is full, within its own count", async () => {
    const ledger = memoryLedger();
    const first = new LimitCounts();
    for (let i = 0; i < 3; i++) await admitted(first, ledger, [ask("c", `a${i}`, 3)]);
    expect((await admitted(first, ledger, [ask("c", "a3", 3)])).ok).toBe(false);
    const next = new LimitCounts();
    const verdicts: boolean[] = [];
    for (let i = 0; i < 5; i++) verdicts.push((await admitted(next, ledger, [ask("c", `b${i}`, 3)])).ok);
    expect(verdicts).toEqual([true, true, true, false, false]);
  });

  it("passes a person another isolate already counted, though the counter is full here", async () => {
    const ledger = memoryLedger();
    const first = new LimitCounts();
    for (let i = 0; i < 2; i++) await admitted(first, ledger, [ask("n", `p${i}`, 2)]);
    expect((await admitted(first, ledger, [ask("n", "p2", 2)])).ok).toBe(false);
    const next = new LimitCounts();
    for (let i = 0; i < 2; i++) expect((await admitted(next, ledger, [ask("n", `q${i}`, 2)])).ok).toBe(true);
    // p0 is counted by the ledger (through the first isolate): a re-send of it is no new person.
    expect((await admitted(next, ledger, [ask("n", "p0", 2)])).ok).toBe(true);
  });
});
