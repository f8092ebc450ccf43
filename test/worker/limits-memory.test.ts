/**
 * Counters dropped from an isolate's memory (it keeps MAX_COUNTERS, the least recently used go
 * first): a dropped counter the ledger knows asks it again, its unreported members are reported,
 * and refused requests cannot push a full counter out.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type Ask, REPORT_AT, UNSYNCED_MAX } from "../../worker/limits/counts.ts";
import { DAY_MS } from "../../worker/limits/index.ts";
import { randomIp } from "./helpers.ts";
import { admit, eachTestInANewIsolate, emailsForwarded, flushSoon, one, open, person, postServed, postWith, unique } from "./people.ts";

/**
 * Other contacts' counters (two events each, so real Counters, never due a report) until this
 * isolate's 20,000 are full and the least recently used have been dropped: what a busy isolate
 * does in the normal course of a day.
 */
async function churn() {
  for (let i = 0; i < 22_000; i++) {
    const verdict = await admit(env, [
      { key: `c:churn-${i}-${crypto.randomUUID()}|act:cm:page-view`, limit: 50, window: DAY_MS, members: ["a", "b"] },
    ]);
    expect(verdict.ok).toBe(true);
  }
}

eachTestInANewIsolate();

describe("a dropped counter's unreported members", () => {
  it("lets at most 50 through one isolate that drops a reported counter from memory with REPORT_AT − 1 members unreported", {
    timeout: 120_000,
  }, async () => {
    const key = `c:${unique("evicted")}|act:cm:logged-in`;
    let admitted = 0;
    // Events reported in groups of REPORT_AT, the last REPORT_AT − 1 waiting for one more that never comes (49 for 5, 48 for 7).
    const events = REPORT_AT * Math.floor(50 / REPORT_AT) - 1;
    for (let i = 0; i < events; i++) if (await one(key)) admitted++;
    expect(admitted).toBe(events);
    for (let cycle = 0; cycle < 3; cycle++) {
      await churn();
      // Dropped after the ledger had counted it, the counter asks the ledger first: REPORT_AT − 1 more fit "under" 50.
      for (let i = 0; i < REPORT_AT - 1; i++) if (await one(key)) admitted++;
    }
    for (let i = 0; i < 20; i++) if (await one(key)) admitted++;
    // One isolate, so the documented bound is 50 + 10·(1 − 1) = 50 ("one isolate counts exactly").
    // Each drop keeps its REPORT_AT − 1 unreported members for the ledger (`orphans`); lost, they would let more through.
    expect(admitted).toBeLessThanOrEqual(50);
  });

  it("a counter never reported (fewer than REPORT_AT members) dropped from memory does not start from 0 again", {
    timeout: 120_000,
  }, async () => {
    const limit = REPORT_AT; // a small limit shows it in two cycles; the per-network budget or a low CONTACT_ACTIVITY_LIMIT alike
    const key = `c:${unique("never-reported")}|act:cm:logged-in`;
    let admitted = 0;
    for (let cycle = 0; cycle < 2; cycle++) {
      for (let i = 0; i < REPORT_AT - 1; i++) if (await one(key, limit)) admitted++;
      await churn();
    }
    for (let i = 0; i < 10; i++) if (await one(key, limit)) admitted++;
    // One isolate: at most `limit`. A dropped counter's unreported members go to the ledger (`orphans`), so none start from 0.
    expect(admitted).toBeLessThanOrEqual(limit);
  });
});
describe("a dropped counter the ledger knows asks it again", () => {
  it("refuses a full contact's new events in the one isolate that counted them, after 20,000 other counters", async () => {
    const key = `evicted-${crypto.randomUUID()}`;
    const ask = (members: string[]): Ask => ({ key, limit: 50, window: DAY_MS, members });
    expect((await admit(env, [ask(Array.from({ length: 50 }, (_, i) => `m${i}`))])).ok).toBe(true);
    await flushSoon(env);
    expect((await admit(env, [ask(["over"])])).ok).toBe(false);
    const run = crypto.randomUUID();
    let extra = 0;
    for (let cycle = 0; cycle < 3; cycle++) {
      // Other counters (two events each, never reported: no Durable Object call) push it out of memory.
      for (let i = 0; i < 20_000; i++)
        await admit(env, [{ key: `fill-${run}-${cycle}-${i}`, limit: 50, window: DAY_MS, members: ["a", "b"] }]);
      for (let j = 0; j < 20; j++) if ((await admit(env, [ask([`c${cycle}-${j}`])])).ok) extra++;
      await flushSoon(env);
    }
    expect(extra).toBe(0);
  }, 60_000);
});
describe("the least recently used counters are dropped first", () => {
  it("keeps a counter that admits a member every 2,000 new counters", async () => {
    const key = `busy-${crypto.randomUUID()}`;
    const ask = (members: string[]): Ask => ({ key, limit: 40, window: DAY_MS, members });
    // 30 members, reported: the ledger's count is known here.
    expect((await admit(env, [ask(Array.from({ length: 30 }, (_, i) => `m${i}`))])).ok).toBe(true);
    await flushSoon(env);
    const run = crypto.randomUUID();
    // 20,000 other counters; this one admits a new member after every 2,000 of them (9 more: 39).
    for (let i = 0; i < 20_000; i++) {
      await admit(env, [{ key: `fill-${run}-${i}`, limit: 50, window: DAY_MS, members: ["a", "b"] }]);
      if (i % 2_000 === 1_999 && i < 18_000) {
        expect((await admit(env, [ask([`busy${i}`])])).ok).toBe(true);
        await flushSoon(env);
      }
    }
    // One more fits the limit of 40; a busy counter still in memory refuses the rest without a doubt.
    let admitted = 0;
    for (let j = 0; j < 10; j++) if ((await admit(env, [ask([`late${j}`])])).ok) admitted++;
    expect(admitted).toBe(1);
  }, 60_000);
});
describe("refused requests make no counters", () => {
  const viewed = (email: string) => ({
    activity_id: "act:cm:viewed-page",
    fields: { "str::email": email },
    key: crypto.randomUUID(),
    created: new Date().toISOString(),
  });
  /** 50 new people × 2 activities: 100 contact counters, if a refused request made any. */
  const churn = () => {
    const people = Array.from({ length: 50 }, () => unique("churn"));
    return { activities: [...people.map((e) => person(e)), ...people.map(viewed)] };
  };
  const fill = async (ip: string) => {
    expect((await postWith(open, { activities: Array.from({ length: 50 }, () => person(unique("fill"))) }, { ip })).status).toBe(200);
    await flushSoon(env);
    const eleven = Array.from({ length: UNSYNCED_MAX + 1 }, () => person(unique("over")));
    expect((await postWith(open, { activities: eleven }, { ip })).status).toBe(429);
  };

  it("still refuses new people for a full network after 22,000 counters' worth of refused requests", async () => {
    const target = randomIp();
    await fill(target);
    expect((await postWith(open, { activities: [person(unique("refused"))] }, { ip: target })).status).toBe(429);

    // Other networks of the attacker, each full: every request of theirs is refused.
    for (let m = 0; m < 4; m++) {
      const ip = randomIp();
      await fill(ip);
      for (let r = 0; r < 55; r++) {
        // Sent again if the ledger did not answer in time (a loaded machine): refused all the same, by the ledger.
        const res = await postServed(open, churn(), { ip });
        expect(res.status).toBe(429);
        expect(((await res.json()) as { error: string }).error).toContain("people in an hour");
      }
    }

    // The target's counter is still there: this isolate, which alone counts exactly, refuses them all.
    let admitted = 0;
    for (let i = 0; i < 10; i++)
      if ((await postWith(open, { activities: [person(unique("extra"))] }, { ip: target })).status === 200) admitted++;
    expect(admitted).toBe(0);
    const extra = [...(await emailsForwarded())].filter((e) => String(e).startsWith("extra-"));
    expect(extra).toHaveLength(0);
  }, 120_000);
});
describe("requests refused after waiting for the ledger", () => {
  it("still refuses new people for a full network after 2,300 refused requests of 9 people × 11 events", async () => {
    const HOUR = 60 * 60 * 1000;
    const run = crypto.randomUUID();
    const network = (name: string, members: string[]): Ask => ({ key: `n:${name}-${run}`, limit: 50, window: HOUR, members });
    const fill = async (name: string) => {
      expect(
        (
          await admit(env, [
            network(
              name,
              Array.from({ length: 50 }, (_, i) => `${name}${i}`),
            ),
          ])
        ).ok,
      ).toBe(true);
      await flushSoon(env);
      expect((await admit(env, [network(name, ["one-more"])])).ok).toBe(false);
    };
    await fill("target");
    await fill("attacker");
    // The attacker's requests: 9 new people, 11 events each (99 activities), from its full network.
    // Each contact counter (11 > UNSYNCED_MAX) waits for the ledger with the network's: refused.
    let refused = 0;
    const attack = async (r: number) => {
      const people = Array.from({ length: 9 }, (_, p) => `churn-${run}-${r}-${p}`);
      const asks: Ask[] = people.map((who) => ({
        key: `${who}|act:cm:viewed-page`,
        limit: 50,
        window: DAY_MS,
        members: Array.from({ length: 11 }, (_, e) => `k${e}|2026-01-01T00:00:00Z`),
      }));
      asks.push(network("attacker", people));
      if (!(await admit(env, asks)).ok) refused++;
    };
    // 25 at a time, as an attacker's requests arrive: each waits for its round trip to the ledger.
    for (let r = 0; r < 2_300; r += 25) await Promise.all(Array.from({ length: 25 }, (_, i) => attack(r + i)));
    expect(refused).toBe(2_300);
    let admitted = 0;
    for (let i = 0; i < 20; i++) if ((await admit(env, [network("target", [`extra${i}`])])).ok) admitted++;
    expect(admitted).toBe(0);
  }, 180_000);
});
