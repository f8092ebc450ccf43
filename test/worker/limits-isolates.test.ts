/**
 * Counting across isolates: each isolate counts in its own memory and reports to the shared ledger
 * (worker/limits/counts.ts). One isolate alone counts exactly; I isolates admit at most
 * limit + UNSYNCED_MAX × (I − 1). `reachNewIsolate()` stands for a request reaching a new isolate.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type Ask, LEDGER_TIMEOUT_MS, REPORT_AT, UNSYNCED_MAX } from "../../worker/limits/counts.ts";
import { DAY_MS } from "../../worker/limits/index.ts";
import { randomIp } from "./helpers.ts";
import {
  admit,
  eachTestInANewIsolate,
  emailsForwarded,
  flushSoon,
  one,
  open,
  person,
  postServed,
  postWith,
  reachNewIsolate,
  unique,
  wrapLedger,
} from "./people.ts";

eachTestInANewIsolate();

describe("a network the ledger says is full, reached through a new isolate", () => {
  it("lets a new isolate admit at most UNSYNCED_MAX people for a network the ledger says is full, however the requests race", async () => {
    const ip = randomIp();
    // The network's 50 people, known to the ledger.
    expect((await postWith(open, { activities: Array.from({ length: 50 }, () => person(unique("seed"))) }, { ip })).status).toBe(200);
    await flushSoon(env);
    expect((await postWith(open, { activities: [person(unique("one-more"))] }, { ip })).status).toBe(429);

    // A second isolate. Each request names one new person with 11 events: the contact counter
    // (11 > UNSYNCED_MAX) sends the request to the ledger; while it waits, the others race on the
    // network counter, which is looked at again after the wait.
    reachNewIsolate();
    const people = Array.from({ length: 40 }, () => unique("burst"));
    const answers = await Promise.all(
      people.map((email) => postWith(open, { activities: Array.from({ length: 11 }, () => person(email)) }, { ip })),
    );
    const admitted = answers.filter((r) => r.status === 200).length;
    // The documented bound for 2 isolates is 50 + UNSYNCED_MAX × 1 = 60 people, i.e. at most 10 here.
    expect(admitted).toBeLessThanOrEqual(UNSYNCED_MAX);
    const burst = [...(await emailsForwarded())].filter((e) => String(e).startsWith("burst-"));
    expect(burst.length).toBe(admitted);
  });
});
describe("members the ledger already counts pass a full counter, through any isolate", () => {
  it("serves a person the network's budget already counted when they come back through another isolate", async () => {
    const ip = randomIp();
    const office = Array.from({ length: 50 }, () => unique("office"));
    // Isolate A: the 50 people of one office network are counted (and reported).
    expect((await postWith(open, { activities: office.map((e) => person(e)) }, { ip })).status).toBe(200);
    await flushSoon(env);
    // Isolate B: 11 newcomers (more than it may admit unsynced) are refused, the ledger says the network is full.
    reachNewIsolate();
    const newcomers = Array.from({ length: UNSYNCED_MAX + 1 }, () => person(unique("new")));
    expect((await postWith(open, { activities: newcomers }, { ip })).status).toBe(429);
    // Now one of the 50 counted people comes back through B: the ledger knows them, nothing new to count.
    const back = await postWith(open, { activities: [person(office[0] as string)] }, { ip });
    expect(back.status).toBe(200);
    // And a newcomer is still refused.
    expect((await postWith(open, { activities: [person(unique("newcomer"))] }, { ip })).status).toBe(429);
    // A fresh isolate asks the ledger (11 people: past UNSYNCED_MAX) and admits them: the ledger
    // knows all of them, so they cost the full budget nothing.
    reachNewIsolate();
    const eleven = office.slice(0, UNSYNCED_MAX + 1).map((e) => person(e));
    expect((await postWith(open, { activities: eleven }, { ip })).status).toBe(200);
  });
});
describe("the bound across isolates, with reports in groups of REPORT_AT", () => {
  it("holds the bound when many isolates each keep REPORT_AT − 1 unreported members of one contact", { timeout: 60_000 }, async () => {
    const chris = unique("four-each");
    const isolates = 8;
    let accepted = 0;
    for (let i = 0; i < isolates - 1; i++) {
      reachNewIsolate();
      for (let j = 0; j < REPORT_AT - 1; j++) if ((await postWith(open, { activities: [person(chris)] })).status === 200) accepted++;
      await flushSoon(env);
    }
    reachNewIsolate();
    for (let j = 0; j < 80; j++) if ((await postWith(open, { activities: [person(chris)] })).status === 200) accepted++;
    // 7 × (REPORT_AT − 1) hidden + 50, within 50 + 10·7 = 120.
    expect(accepted).toBeLessThanOrEqual(50 + UNSYNCED_MAX * (isolates - 1));
  });

  it("holds the bound when a contact's events reach isolate after isolate, 2 × REPORT_AT − 1 in each (REPORT_AT reported, the rest kept)", {
    timeout: 60_000,
  }, async () => {
    const key = `c:${unique("spread9")}|act:cm:logged-in`;
    const isolates = 12;
    let admitted = 0;
    for (let i = 0; i < isolates; i++) {
      reachNewIsolate();
      for (let j = 0; j < 2 * REPORT_AT - 1; j++) if (await one(key)) admitted++;
    }
    // Within the formula (50 + 10·11 = 160): each isolate keeps its last REPORT_AT − 1 from the ledger until one more comes.
    expect(admitted).toBeLessThanOrEqual(50 + UNSYNCED_MAX * (isolates - 1));
  });

  it("holds the people budget's bound in open mode across isolates that each keep REPORT_AT − 1 unreported people", {
    timeout: 60_000,
  }, async () => {
    const ip = randomIp();
    const isolates = 6;
    let people = 0;
    for (let i = 0; i < isolates - 1; i++) {
      reachNewIsolate();
      const res = await postWith(open, { activities: Array.from({ length: REPORT_AT - 1 }, () => person(unique("p"))) }, { ip });
      if (res.status === 200) people += REPORT_AT - 1;
    }
    reachNewIsolate();
    for (let r = 0; r < 10; r++) {
      const res = await postWith(open, { activities: Array.from({ length: 10 }, () => person(unique("p"))) }, { ip });
      if (res.status === 200) people += 10;
    }
    expect(people).toBeLessThanOrEqual(50 + UNSYNCED_MAX * (isolates - 1));
  });

  it("a re-send of a member an isolate holds unreported is free there, and counted once by the ledger", async () => {
    const key = `c:${unique("resend")}|act:cm:logged-in`;
    const members = Array.from({ length: REPORT_AT - 1 }, () => crypto.randomUUID());
    for (const m of members) expect((await admit(env, [{ key, limit: REPORT_AT, window: DAY_MS, members: [m] }])).ok).toBe(true);
    // Re-sent many times: nothing counted, nothing due.
    for (let i = 0; i < 20; i++)
      expect(await admit(env, [{ key, limit: REPORT_AT, window: DAY_MS, members: [members[i % members.length] as string] }])).toEqual({
        ok: true,
        report: false,
      });
    // One new member: the REPORT_ATth, due; the ledger counts REPORT_AT, the limit, so one more is refused for good.
    expect(await one(key, REPORT_AT)).toBe(true);
    const past = await admit(env, [{ key, limit: REPORT_AT, window: DAY_MS, members: [crypto.randomUUID()] }]);
    expect(past.ok).toBe(false);
  });
});
// Waits on one counter share one ledger call, ten new members a round.
describe("many requests waiting on one counter at once share the ledger's answers", () => {
  let calls = 0;
  /** Whether a ledger call took LEDGER_TIMEOUT_MS or more (a loaded machine): its waiters may then be told to come back. */
  let late = false;
  const run = async (delayMs: number, requests: number) => {
    const budget = { ...open, PEOPLE_PER_NETWORK: "1000" };
    const bindings = {
      ...budget,
      LIMIT_LEDGER: wrapLedger((real) => async (e) => {
        calls++;
        const started = Date.now();
        const timer = setTimeout(() => {
          late = true;
        }, LEDGER_TIMEOUT_MS);
        try {
          if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
          return await real(e);
        } finally {
          clearTimeout(timer);
          if (Date.now() - started >= LEDGER_TIMEOUT_MS) late = true;
        }
      }),
    };
    calls = 0;
    late = false;
    const ip = randomIp();
    const bodies = Array.from({ length: requests }, () => ({ activities: [person(unique("office"))] }));
    const answers = await Promise.all(bodies.map((body) => postWith(bindings, body, { ip })));
    const statuses = await Promise.all(
      answers.map(
        async (r) =>
          `${r.status}${r.headers.get("Retry-After") ? `/${r.headers.get("Retry-After")} ${((await r.clone().json()) as { error?: string }).error?.slice(0, 40)}` : ""}`,
      ),
    );
    const tally: Record<string, number> = {};
    for (const s of statuses) tally[s] = (tally[s] ?? 0) + 1;
    if (!late) return tally;
    // The ledger did not answer in time (the machine, not the relay): those told to come back do, as the snippet would.
    const again = await Promise.all(
      answers.map(async (r, i) => (r.status === 429 ? (await postServed(bindings, bodies[i], { ip })).status : r.status)),
    );
    return { "200": again.filter((s) => s === 200).length };
  };
  it("serves every person of a busy office network far below its budget (ledger answering in 0 ms)", async () => {
    const tally = await run(0, 90);
    expect(tally).toEqual({ "200": 90 });
  });
  for (const ms of [100, 200])
    it(`serves every person of a busy office network far below its budget (ledger answering in ${ms} ms)`, async () => {
      const tally = await run(ms, 90);
      expect(tally).toEqual({ "200": 90 });
      // Shared calls: about one a round of ten, not one a request.
      expect(calls).toBeLessThan(30);
    });
});
describe("the ledger dates each member from when an isolate admitted it", () => {
  afterEach(() => vi.useRealTimers());

  it("stops counting people admitted more than an hour ago, though reported later", async () => {
    const budget5 = { ...open, PEOPLE_PER_NETWORK: "5" };
    const ip = randomIp();
    const t0 = Date.now();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    // 4 people at t0: fewer than REPORT_AT, so they stay in this isolate, unreported.
    for (let i = 0; i < 4; i++) expect((await postWith(budget5, { activities: [person(unique("early"))] }, { ip })).status).toBe(200);
    // A 5th at t0 + 59 min: the counter is reported, each member with when it was admitted.
    vi.setSystemTime(t0 + 59 * 60_000);
    expect((await postWith(budget5, { activities: [person(unique("fifth"))] }, { ip })).status).toBe(200);
    await flushSoon(env);
    // At t0 + 61 min only the 5th was seen in the last hour: 4 more people fit the budget of 5.
    vi.setSystemTime(t0 + 61 * 60_000);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await postWith(budget5, { activities: [person(unique("late"))] }, { ip })).status);
    expect(statuses).toEqual([200, 200, 200, 200]);
    // And the budget still holds.
    expect((await postWith(budget5, { activities: [person(unique("sixth"))] }, { ip })).status).toBe(429);
  });
});
describe("members learnt from the ledger's probes expire when the ledger's count of them does", () => {
  it("counts again, in the next hour, a person whom the ledger counted through another isolate", async () => {
    const t0 = Date.now();
    vi.useFakeTimers({ toFake: ["Date"], now: t0 });
    const key = `n:remembered-${crypto.randomUUID()}`;
    const HOUR = 60 * 60 * 1000;
    const ask = (members: string[]): Ask => ({ key, limit: 50, window: HOUR, members });
    const old = Array.from({ length: 50 }, (_, i) => `old${i}`);
    // Isolate B: 50 people at t0 (the budget), reported.
    expect((await admit(env, [ask(old)])).ok).toBe(true);
    await flushSoon(env);
    // Isolate A at t0 + 59 min: the same 50 come back; the ledger knows them (probes), so they pass and are remembered.
    reachNewIsolate();
    vi.setSystemTime(t0 + 59 * 60_000);
    expect((await admit(env, [ask(old)])).ok).toBe(true);
    // t0 + 61 min: the ledger no longer counts them. 50 new people fill this hour's budget...
    vi.setSystemTime(t0 + 61 * 60_000);
    let fresh = 0;
    for (let i = 0; i < 60; i++) {
      if (!(await admit(env, [ask([`new${i}`])])).ok) break;
      fresh++;
      if (i % 5 === 4) await flushSoon(env);
    }
    expect(fresh).toBe(50);
    // ... and the 50 old ones still pass through A, uncounted anywhere: 100 people in an hour.
    let free = 0;
    for (const p of old) if ((await admit(env, [ask([p])])).ok) free++;
    expect(free).toBe(0);
  });
});
