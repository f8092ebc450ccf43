/**
 * The limits while the shared ledger is unreachable, slow, or loses an answer: no request waits
 * longer than LEDGER_TIMEOUT_MS, an isolate admits at most UNSYNCED_MAX members of a counter it could
 * not report, a refusal asks for a retry within the snippet's hour, and no count is lost or kept too long.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { type Ask, FLUSH_DELAY_MS, LEDGER_TIMEOUT_MS, REPORT_AT, UNSYNCED_MAX } from "../../worker/limits/counts.ts";
import { DAY_MS } from "../../worker/limits/index.ts";
import { randomIp } from "./helpers.ts";
import { admit, eachTestInANewIsolate, flushSoon, open, person, postWith, reachNewIsolate, unique, wrapLedger } from "./people.ts";

/** The snippet's MAX_RETRY_AFTER: a 429 asking for longer is dropped for good (snippet/src/core.ts). */
const SNIPPET_MAX_RETRY_AFTER = 3600;

eachTestInANewIsolate();

/** The relay's default wait for the ledger: these tests are of it (the workerd projects' bindings give it 30 s). */
const ledgerWait = { LEDGER_TIMEOUT_MS: String(LEDGER_TIMEOUT_MS) };

describe("the ledger unreachable or slow", () => {
  const ledgerThat = (sync: () => Promise<unknown>) =>
    ({ ...open, ...ledgerWait, LIMIT_LEDGER: { idFromName: (name: string) => name, get: () => ({ sync }) } }) as unknown as typeof open;

  it("admits at most UNSYNCED_MAX people per isolate for one network while the ledger is down, and never answers 5xx", async () => {
    const down = ledgerThat(() => Promise.reject(new Error("Durable Object is overloaded")));
    const ip = randomIp();
    let admitted = 0;
    const statuses = new Set<number>();
    for (let isolate = 0; isolate < 3; isolate++) {
      reachNewIsolate();
      for (let r = 0; r < 6; r++) {
        const res = await postWith(down, { activities: Array.from({ length: 10 }, () => person(unique("outage"))) }, { ip });
        statuses.add(res.status);
        if (res.status === 200) admitted += 10;
      }
    }
    expect([...statuses].sort()).toEqual([200, 429]);
    // Each isolate admits what it may hold unanswered for, not a whole budget.
    expect(admitted).toBeLessThanOrEqual(UNSYNCED_MAX * 3);
  });

  it("waits for a hung ledger at most LEDGER_TIMEOUT_MS, then decides on what the isolate knows", async () => {
    const hung = ledgerThat(() => new Promise(() => {}));
    // 11 events for one contact: more than UNSYNCED_MAX, so this request must ask the ledger.
    const chris = unique("waits");
    const pending = Promise.resolve(postWith(hung, { activities: Array.from({ length: 11 }, () => person(chris)) }));
    const outcome = await Promise.race([pending.then((r) => r.status), new Promise((r) => setTimeout(() => r("still waiting"), 3000))]);
    // More than the isolate may hold unanswered for, with no answer: refused, to be sent again.
    expect(outcome).toBe(429);
    // A visitor's ordinary request does not wait for the ledger at all.
    expect((await postWith(hung, { activities: [person(unique("ordinary"))] })).status).toBe(200);
  });
});
describe("reports while the ledger is down", () => {
  it("holds UNSYNCED_MAX per isolate while the ledger is down (reports fail and come back as unreported)", {
    timeout: 60_000,
  }, async () => {
    // A flush an earlier file left pending would carry its env (the working ledger) into this test's reports.
    await flushSoon(env);
    const down = { ...env, LIMIT_LEDGER: wrapLedger(() => () => Promise.reject(new Error("overloaded"))) } as typeof env;
    const key = `c:${unique("down")}|act:cm:logged-in`;
    const isolates = 3;
    let admitted = 0;
    for (let i = 0; i < isolates; i++) {
      reachNewIsolate();
      let here = 0;
      for (let j = 0; j < 15; j++) {
        const verdict = await admit(down, [{ key, limit: 50, window: DAY_MS, members: [crypto.randomUUID()] }]);
        if (verdict.ok) here++;
        if (verdict.ok && verdict.report) await flushSoon(down);
      }
      expect(here).toBe(UNSYNCED_MAX);
      admitted += here;
    }
    expect(admitted).toBeLessThanOrEqual(50 + UNSYNCED_MAX * (isolates - 1));
  });
});
describe("a refusal while the ledger is unreachable or slow asks for a retry within the snippet's hour", () => {
  it("answers a transient refusal with a Retry-After the snippet retries (≤ 1 h), not the counter's whole window", async () => {
    const down = { ...open, LIMIT_LEDGER: wrapLedger(() => () => Promise.reject(new Error("Durable Object is overloaded"))) };
    const chris = unique("stalled");
    // A logged-in visitor's 10 page events, one request each: admitted on the isolate's own account.
    for (let i = 0; i < UNSYNCED_MAX; i++) expect((await postWith(down, { activities: [person(chris)] })).status).toBe(200);
    // The 11th needs the ledger, which does not answer: refused — a transient refusal, "to be sent again".
    const res = await postWith(down, { activities: [person(chris)] });
    expect(res.status).toBe(429);
    const after = Number(res.headers.get("Retry-After"));
    // 86400 here: the snippet reads > MAX_RETRY_AFTER as Ortto's daily limit and drops the event.
    expect(after).toBeLessThanOrEqual(SNIPPET_MAX_RETRY_AFTER);
  });

  it("answers the same for a ledger that is only slow (one round over LEDGER_TIMEOUT_MS) while the contact is far below 50", async () => {
    const slow = {
      ...open,
      ...ledgerWait,
      LIMIT_LEDGER: wrapLedger((real) => (entries) => new Promise((r) => setTimeout(() => r(real(entries)), LEDGER_TIMEOUT_MS + 150))),
    };
    const chris = unique("slow");
    // 11 events in one batch (an offline queue flushing): the request must ask the ledger, which answers too late.
    const res = await postWith(slow, { activities: Array.from({ length: UNSYNCED_MAX + 1 }, () => person(chris)) });
    expect(res.status).toBe(429);
    // The snippet splits the batch and sends each alone: those pass. But a hot contact's single event:
    for (let i = 0; i < UNSYNCED_MAX; i++) await postWith(slow, { activities: [person(chris)] });
    const single = await postWith(slow, { activities: [person(chris)] });
    expect(single.status === 200 || Number(single.headers.get("Retry-After")) <= SNIPPET_MAX_RETRY_AFTER).toBe(true);
  });
});
describe("a report whose answer never comes back", () => {
  it("does not shrink a contact's limit after a ledger call whose answer was lost (the ledger did record it)", async () => {
    const key = `lost-${crypto.randomUUID()}`;
    const ask = (member: string): Ask => ({ key, limit: 50, window: DAY_MS, members: [member] });
    const delivered: Promise<unknown>[] = [];
    // The call reaches the ledger (it records the members) but its answer never reaches this code, as
    // when the request that made it has ended (workerd drops the continuation) or the call hangs.
    const lost = {
      ...env,
      ...ledgerWait,
      LIMIT_LEDGER: wrapLedger((real) => (entries) => {
        delivered.push(real(entries));
        return new Promise(() => {});
      }),
    } as typeof env;
    for (let i = 0; i < 5; i++) expect((await admit(lost, [ask(`m${i}`)])).ok).toBe(true);
    await flushSoon(lost); // times out after 300 ms; the ledger has the 5
    await Promise.all(delivered);

    // The ledger is healthy again. This contact has 5 events counted; 45 more are its due.
    let admitted = 0;
    for (let i = 5; i < 60; i++) {
      const verdict = await admit(env, [ask(`m${i}`)]);
      if (!verdict.ok) break;
      admitted++;
      if (i % 5 === 4) await flushSoon(env);
    }
    expect(admitted).toBe(45);
  });

  it("admits a full limit again once the window has passed after a lost answer", async () => {
    const t0 = Date.now();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const key = `stuck-${crypto.randomUUID()}`;
    const ask = (member: string): Ask => ({ key, limit: 10, window: DAY_MS, members: [member] });
    const lost = {
      ...env,
      ...ledgerWait,
      LIMIT_LEDGER: wrapLedger(() => () => new Promise(() => {})),
    } as typeof env;
    for (let i = 0; i < 5; i++) expect((await admit(lost, [ask(`m${i}`)])).ok).toBe(true);
    await flushSoon(lost);
    // Two days later: nothing of this contact is counted anywhere any more; 10 fit.
    vi.setSystemTime(t0 + 2 * DAY_MS);
    let admitted = 0;
    for (let i = 0; i < 20; i++) {
      if (!(await admit(env, [ask(`d${i}`)])).ok) break;
      admitted++;
      if (i % 5 === 4) await flushSoon(env);
    }
    expect(admitted).toBe(10);
  });
});
/** A counter of 2 × REPORT_AT + 2: two groups of REPORT_AT reported, one more member in flight, and one that fits. */
const LIMIT = 2 * REPORT_AT + 2;

/**
 * A counter of LIMIT with LIMIT − 1 members admitted across two isolates (p and REPORT_AT − 1 others
 * reported by one; REPORT_AT m's reported, then a last one, by the other), the last one's report in
 * flight to a ledger that fails it after 50 ms (a reset Durable Object) while probes still get through.
 */
async function oneShortWithTheLastReportFailing() {
  const key = `misaligned-${crypto.randomUUID()}`;
  const ask = (members: string[]): Ask => ({ key, limit: LIMIT, window: DAY_MS, members });
  // Isolate B counts p and REPORT_AT − 1 others, and reports them.
  expect((await admit(env, [ask(["p", ...Array.from({ length: REPORT_AT - 1 }, (_, i) => `x${i}`)])])).ok).toBe(true);
  await flushSoon(env);
  // Isolate A: REPORT_AT members, reported (the ledger now counts 2 × REPORT_AT).
  reachNewIsolate();
  for (let i = 0; i < REPORT_AT; i++) expect((await admit(env, [ask([`m${i}`])])).ok).toBe(true);
  await flushSoon(env);
  // One more, last; its report fails after 50 ms (a reset Durable Object), while a probe gets through.
  expect((await admit(env, [ask(["last"])])).ok).toBe(true);
  const flaky = {
    ...env,
    LIMIT_LEDGER: wrapLedger(
      (real) => (entries) =>
        entries.some((e) => e.add.length)
          ? new Promise((_, reject) => setTimeout(() => reject(new Error("Durable Object reset")), 50))
          : real(entries),
    ),
  } as typeof env;
  const report = flushSoon(flaky);
  await new Promise((r) => setTimeout(r, FLUSH_DELAY_MS + 30)); // the last one is in flight
  return { ask, flaky, report };
}

/** LIMIT − 1 counted: one more fits, not two. */
async function expectOneMoreFits(ask: (members: string[]) => Ask) {
  await flushSoon(env);
  const q1 = await admit(env, [ask(["q1"])]);
  await flushSoon(env);
  const q2 = await admit(env, [ask(["q2"])]);
  expect(q1.ok).toBe(true);
  expect(q2.ok).toBe(false);
}

describe("a failed report while a probe of the same counter gets through", () => {
  it("never loses an admitted member from the ledger (so the count stays exact)", async () => {
    const { ask, flaky, report } = await oneShortWithTheLastReportFailing();
    // A request with p (the ledger knows it: remembered here) and two new ones: over LIMIT, refused.
    expect((await admit(flaky, [ask(["p", "q1", "q2"])])).ok).toBe(false);
    await report; // fails: the last one, the member it carried, is unreported again (not p, which the probe remembered)
    await expectOneMoreFits(ask);
  });
});
describe("a failed report alone", () => {
  it("restores the failed report and keeps the count exact", async () => {
    const { ask, report } = await oneShortWithTheLastReportFailing();
    await report; // fails: the last one is unreported again
    await expectOneMoreFits(ask);
  });
});
