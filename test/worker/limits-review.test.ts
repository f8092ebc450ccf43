/**
 * Findings of an adversarial review of the limits, each turned into a regression test: the
 * attack as the reviewer ran it in workerd, and the behaviour now required.
 */
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { UNSYNCED_MAX } from "../../worker/limits/counts.ts";
import { emulator, loggedIn } from "./helpers.ts";
import { flushSoon, forgetCounters, open, person, postWith, SERVER_TOKEN, unique } from "./people.ts";

const forwarded = async () => (await emulator.requests()).flatMap((r) => r.body.activities ?? []);
const emailsForwarded = async () => new Set((await forwarded()).map((a) => a.fields?.["str::email"]));
let n = 0;
const ipv4 = () => `203.0.113.${++n}`;

beforeEach(async () => {
  await emulator.reset();
  forgetCounters();
});

describe("F1: every counter is checked against UNSYNCED_MAX again after a wait for the ledger", () => {
  it("lets a new isolate admit at most UNSYNCED_MAX people for a network the ledger says is full, however the requests race", async () => {
    const ip = ipv4();
    // The network's 50 people, known to the ledger.
    expect((await postWith(open, { activities: Array.from({ length: 50 }, () => person(unique("seed"))) }, { ip })).status).toBe(200);
    await flushSoon(env);
    expect((await postWith(open, { activities: [person(unique("one-more"))] }, { ip })).status).toBe(429);

    // A second isolate. Each request names one new person with 11 events: the contact counter
    // (11 > UNSYNCED_MAX) sends the request to the ledger; while it waits, the others race on the
    // network counter, which is looked at again after the wait.
    forgetCounters();
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

describe("F2: a full counter still admits members the ledger already counts, through any isolate", () => {
  it("serves a person the network's budget already counted when they come back through another isolate", async () => {
    const ip = ipv4();
    const office = Array.from({ length: 50 }, () => unique("office"));
    // Isolate A: the 50 people of one office network are counted (and reported).
    expect((await postWith(open, { activities: office.map((e) => person(e)) }, { ip })).status).toBe(200);
    await flushSoon(env);
    // Isolate B: 11 newcomers (more than it may admit unsynced) are refused, the ledger says the network is full.
    forgetCounters();
    const newcomers = Array.from({ length: UNSYNCED_MAX + 1 }, () => person(unique("new")));
    expect((await postWith(open, { activities: newcomers }, { ip })).status).toBe(429);
    // Now one of the 50 counted people comes back through B: the ledger knows them, nothing new to count.
    const back = await postWith(open, { activities: [person(office[0] as string)] }, { ip });
    expect(back.status).toBe(200);
    // And a newcomer is still refused.
    expect((await postWith(open, { activities: [person(unique("newcomer"))] }, { ip })).status).toBe(429);
    // A fresh isolate asks the ledger (11 people: past UNSYNCED_MAX) and admits them: the ledger
    // knows all of them, so they cost the full budget nothing.
    forgetCounters();
    const eleven = office.slice(0, UNSYNCED_MAX + 1).map((e) => person(e));
    expect((await postWith(open, { activities: eleven }, { ip })).status).toBe(200);
  });
});

describe("F3: only a Bearer Authorization header claims to be a server", () => {
  it("serves a visitor of a site behind HTTP basic auth (the browser adds Authorization to same-origin requests)", async () => {
    const res = await postWith(open, { activities: [person(unique("staging"))] }, { headers: { Authorization: "Basic dXNlcjpwYXNz" } });
    expect(res.status).toBe(200);
    const empty = await postWith(open, { activities: [person(unique("staging"))] }, { headers: { Authorization: "" } });
    expect(empty.status).toBe(200);
    expect(await forwarded()).toHaveLength(2);
  });
});

describe("F5: refused requests make no counters, so they cannot push a full counter out of memory", () => {
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
    const target = ipv4();
    await fill(target);
    expect((await postWith(open, { activities: [person(unique("refused"))] }, { ip: target })).status).toBe(429);

    // Other networks of the attacker, each full: every request of theirs is refused.
    for (let m = 0; m < 4; m++) {
      const ip = ipv4();
      await fill(ip);
      for (let r = 0; r < 55; r++) {
        const res = await postWith(open, churn(), { ip });
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

describe("F6: the ledger unreachable or slow", () => {
  const ledgerThat = (sync: () => Promise<unknown>) =>
    ({ ...open, LIMIT_LEDGER: { idFromName: (name: string) => name, get: () => ({ sync }) } }) as unknown as typeof open;

  it("admits at most UNSYNCED_MAX people per isolate for one network while the ledger is down, and never answers 5xx", async () => {
    const down = ledgerThat(() => Promise.reject(new Error("Durable Object is overloaded")));
    const ip = ipv4();
    let admitted = 0;
    const statuses = new Set<number>();
    for (let isolate = 0; isolate < 3; isolate++) {
      forgetCounters();
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

describe("held: server token format tricks", () => {
  const body = () => ({ activities: [person(unique("srv"))] });
  const auth = async (value: string, bindings: Record<string, string> = open) =>
    (await postWith(bindings, body(), { origin: null, headers: { Authorization: value } })).status;

  it("accepts only the exact token, however the Bearer scheme is spaced or cased", async () => {
    expect(await auth(`Bearer ${SERVER_TOKEN}`)).toBe(200);
    expect(await auth(`bearer   ${SERVER_TOKEN}  `)).toBe(200);
    expect(await auth("Bearer ")).toBe(401);
    expect(await auth("Bearer")).toBe(401);
    expect(await auth(`Bearer ${SERVER_TOKEN.slice(0, -1)}`)).toBe(401);
    expect(await auth(`Bearer ${SERVER_TOKEN}x`)).toBe(401);
    expect(await auth(`Bearer ${SERVER_TOKEN} extra`)).toBe(401);
    expect(await auth(`Bearer ${SERVER_TOKEN}, Bearer ${SERVER_TOKEN}`)).toBe(401); // two headers, as Headers joins them
    // Another scheme is no claim to be a server: a page's request, and without an Origin, refused as one.
    expect(await auth(`Basic ${btoa(`x:${SERVER_TOKEN}`)}`)).toBe(403);
  });

  it("refuses every token when SERVER_TOKEN is empty or only separators", async () => {
    for (const configured of ["", " ", " , ", ",,"]) {
      expect(await auth("Bearer ", { SERVER_TOKEN: configured })).toBe(401);
      expect(await auth("Bearer ,", { SERVER_TOKEN: configured })).toBe(401);
      expect(await auth("Bearer x", { SERVER_TOKEN: configured })).toBe(401);
    }
  });
});

describe("held: identifier variants are one contact", () => {
  it("counts case and padding of an email, and every phone notation of the same digits, as one person", async () => {
    const limited = { ...open, CONTACT_ACTIVITY_LIMIT: "2" };
    const local = `Mixed.${crypto.randomUUID()}`;
    const variants = [`${local}@Example.COM`, ` ${local.toLowerCase()}@example.com\u00a0`];
    for (const e of variants) expect((await postWith(limited, { activities: [person(e)] })).status).toBe(200);
    expect((await postWith(limited, { activities: [person(`\t${local.toUpperCase()}@EXAMPLE.com`)] })).status).toBe(429);
    const phones = [{ c: "61", n: "401234567" }, { phone: "+61401234567" }, { phone: "61401234567", parse_with_country_code: true }];
    const tail = String(Date.now()).slice(-6);
    const phoneActs = phones.map((p) => {
      const withTail = "c" in p ? { ...p, n: `4${tail}67` } : { ...p, phone: p.phone.replace("401234567", `4${tail}67`) };
      return loggedIn({
        fields: { "str::first": "P", "phn::phone": withTail },
        key: crypto.randomUUID(),
        created: new Date().toISOString(),
      });
    });
    expect((await postWith(limited, { activities: phoneActs.slice(0, 2) })).status).toBe(200);
    expect((await postWith(limited, { activities: [phoneActs[2]] })).status).toBe(429);
  });
});

describe("F10: the ledger dates a member from when it was admitted, not when it was reported", () => {
  afterEach(() => vi.useRealTimers());

  it("stops counting people admitted more than an hour ago, though reported later", async () => {
    const budget5 = { ...open, PEOPLE_PER_NETWORK: "5" };
    const ip = ipv4();
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
