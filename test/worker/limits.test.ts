import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { signIdentity } from "../../worker/identity.ts";
import { MEMBER_CHARS, UNSYNCED_MAX } from "../../worker/limits/counts.ts";
import { CACHED_MEMBERS, LimitLedger } from "../../worker/limits/ledger-object.ts";
import { emulator, loggedIn, withinOneRateWindow } from "./helpers.ts";
import { flushSoon, open, person, postServed, postWith, reachNewIsolate, SERVER_TOKEN, unique } from "./people.ts";

const stored = async () => (await emulator.activities()).activities.length;
const bearer = (token = SERVER_TOKEN) => ({ headers: { Authorization: `Bearer ${token}` } });

beforeEach(async () => {
  await emulator.reset();
});

describe("per-contact limit, counted in isolate memory and the shared ledger", () => {
  it("lets at most 50 of 200 concurrent events for one contact through, in one isolate, and exactly 50 in all", async () => {
    const chris = unique("flood");
    const answers = await Promise.all(Array.from({ length: 200 }, () => postWith(open, { activities: [person(chris)] })));
    const statuses = answers.map((r) => r.status);
    const burst = statuses.filter((s) => s === 200).length;
    // Under this much contention on one counter some are told to come back in a second (429, Retry-After 1).
    expect(burst).toBeLessThanOrEqual(50);
    expect(statuses.filter((s) => s !== 200).every((s) => s === 429)).toBe(true);
    // Sent again one by one, as the snippet would: the contact reaches its 50, never more.
    let later = 0;
    for (let i = 0; i < 60; i++) if ((await postWith(open, { activities: [person(chris)] })).status === 200) later++;
    expect(burst + later).toBe(50);
    expect(await stored()).toBe(50);
  });

  it("bounds what several isolates at once let through by UNSYNCED_MAX each, once the ledger has heard", async () => {
    const chris = unique("spread");
    const isolates = 4;
    let accepted = 0;
    // Each round is one more isolate meeting the contact for the first time: it knows only the ledger.
    for (let i = 0; i < isolates; i++) {
      reachNewIsolate();
      for (let j = 0; j < 30; j++) if ((await postWith(open, { activities: [person(chris)] })).status === 200) accepted++;
      await flushSoon(env);
    }
    expect(accepted).toBeGreaterThanOrEqual(50);
    expect(accepted).toBeLessThanOrEqual(50 + UNSYNCED_MAX * (isolates - 1));
    // What the relay let through reached Ortto, which enforces its own 50 a day exactly behind it.
    const forwarded = (await emulator.requests()).flatMap((r) => r.body.activities ?? []);
    expect(forwarded).toHaveLength(accepted);
    expect(await stored()).toBe(50);
  });

  it("refuses at once while the ledger says the contact is full, and a new isolate learns it within its own count", async () => {
    const limited = { ...open, CONTACT_ACTIVITY_LIMIT: "3" };
    const eve = unique("full");
    expect((await postWith(limited, { activities: [person(eve), person(eve), person(eve)] })).status).toBe(200);
    const refused = await postWith(limited, { activities: [person(eve)] });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("Retry-After"))).toBeGreaterThan(86_000);
    expect((await postWith(limited, { activities: [person(eve)] })).status).toBe(429);
    // A new isolate knows only the ledger, which it asks once its own view reaches the limit.
    reachNewIsolate();
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await postWith(limited, { activities: [person(eve)] })).status);
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
  });

  it("is not bypassed by re-sending a counted event beside a refused one (no refunds to abuse)", async () => {
    const limited = { ...open, CONTACT_ACTIVITY_LIMIT: "2" };
    const [a, b] = [unique("a"), unique("b")];
    const lastOfA = person(a, { created: new Date().toISOString() });
    expect((await postWith(limited, { activities: [person(a), lastOfA] })).status).toBe(200);
    expect((await postWith(limited, { activities: [person(b), person(b)] })).status).toBe(200);
    let accepted = 0;
    for (let i = 0; i < 10; i++) {
      // The re-send of a's counted event goes again (Ortto merges it); b's new one is over b's limit.
      const res = await postWith(limited, { activities: [lastOfA, person(b)] });
      expect(res.status).toBe(207);
      expect(((await res.json()) as { refused: { index: number }[] }).refused.map((r) => r.index)).toEqual([1]);
      if ((await postWith(limited, { activities: [person(a)] })).status === 200) accepted++;
    }
    expect(accepted).toBe(0);
    const forA = (await emulator.activities()).activities.filter((x) => x.fields?.["str::email"] === a);
    expect(forA).toHaveLength(2);
  });

  it("counts an external id however it is padded, as Ortto matches it", async () => {
    const limited = { ...open, CONTACT_ACTIVITY_LIMIT: "1" };
    const ei = `v-${crypto.randomUUID()}`;
    const statuses: number[] = [];
    for (const padded of [ei, `${ei} `, ` ${ei}`, `  ${ei}  `, `\t${ei}`]) {
      statuses.push(
        (
          await postWith(limited, {
            activities: [loggedIn({ key: crypto.randomUUID(), created: new Date().toISOString(), fields: { "str::ei": padded } })],
          })
        ).status,
      );
    }
    expect(statuses).toEqual([200, 429, 429, 429, 429]);
  });
});

describe("open mode: people per client network", () => {
  it("lets one IP name at most 50 people an hour, whatever the batching, and forwards nothing of a refused request", async () => {
    const ip = "192.0.2.150";
    let created = 0;
    const statuses = new Set<number>();
    // 2,000 people: 200 requests of 10 (the per-IP request budget throttles some of them as well).
    for (let r = 0; r < 200; r++) {
      const res = await postWith(open, { activities: Array.from({ length: 10 }, () => person(unique("mint"))) }, { ip });
      statuses.add(res.status);
      if (res.status === 200) created += 10;
    }
    expect(created).toBe(50);
    expect(await stored()).toBe(50);
    expect([...statuses].sort()).toEqual([200, 429]);
  });

  it("names the rule in its 429", async () => {
    const ip = "192.0.2.151";
    for (let r = 0; r < 5; r++)
      expect((await postServed(open, { activities: Array.from({ length: 10 }, () => person(unique("p"))) }, { ip })).status).toBe(200);
    const res = await postServed(open, { activities: [person(unique("one-more"))] }, { ip });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("Retry-After"))).toBeGreaterThan(0);
    expect(await res.json()).toMatchObject({
      error: expect.stringContaining("people in an hour"),
      details: [{ path: "headers.cf-connecting-ip", message: "expected at most 50 distinct people per client network per hour" }],
    });
  });

  it("answers 400, not a 429 to retry, for one request naming more people than the whole budget", async () => {
    const res = await postWith(open, { activities: Array.from({ length: 51 }, () => person(unique("bulk"))) }, { ip: "192.0.2.152" });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toContain("may name at most 50 per hour");
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("serves 30 visitors behind one shared address, each coming back", { timeout: 60_000 }, async () => {
    const ip = "192.0.2.153";
    const office = Array.from({ length: 30 }, () => unique("office"));
    for (let round = 0; round < 2; round++) {
      for (const email of office) {
        expect((await postServed(open, { activities: [person(email)] }, { ip })).status).toBe(200);
      }
    }
    expect(await stored()).toBe(60);
  });

  it("gives the 80 addresses of one IPv6 /64 one budget", async () => {
    let created = 0;
    for (let i = 0; i < 80; i++) {
      const ip = `2001:db8:aa:bb:${i.toString(16)}::${(i * 7).toString(16)}`;
      if ((await postWith(open, { activities: [person(unique("v6"))] }, { ip })).status === 200) created++;
    }
    expect(created).toBe(50);
  });

  it("gives the /64s of one IPv6 /48 a shared budget of ten /64s' worth", async () => {
    const five = { ...open, PEOPLE_PER_NETWORK: "5" };
    let created = 0;
    for (let net = 0; net < 12; net++) {
      for (let i = 0; i < 5; i++) {
        const ip = `2001:db8:ee:${net.toString(16)}::${(i + 1).toString(16)}`;
        if ((await postWith(five, { activities: [person(unique("wide"))] }, { ip })).status === 200) created++;
      }
    }
    expect(created).toBe(50);
  });

  it("throttles 300 rapid requests from one /64 like one IP", async () => {
    await withinOneRateWindow();
    const statuses: number[] = [];
    for (let i = 0; i < 300; i++) statuses.push((await postWith(open, "{}", { ip: `2001:db8:cc:dd:${i.toString(16)}:1:2:3` })).status);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(200);
    expect(statuses.slice(0, 100).every((s) => s === 400)).toBe(true);
  });

  it("does not apply in signed mode, where each activity is one person the site's backend signed", async () => {
    const signed = { ...open, IDENTITY_SECRET: "identity-secret-for-tests" };
    const ip = "192.0.2.154";
    for (let i = 0; i < 55; i++) {
      const email = unique("signed");
      const res = await postWith(
        signed,
        { identity_token: await signIdentity(signed.IDENTITY_SECRET, email), activities: [person(email)] },
        { ip },
      );
      expect(res.status).toBe(200);
    }
  });
});

describe("SERVER_TOKEN: a trusted backend's batches", () => {
  it("forwards a batch of 100 people with no Origin, past the people budget and the crawler filter", async () => {
    const batch = Array.from({ length: 100 }, () => person(unique("server")));
    const res = await postWith(
      open,
      { activities: batch },
      {
        origin: null,
        contentType: "application/json",
        ip: "192.0.2.160",
        headers: { Authorization: `Bearer ${SERVER_TOKEN}`, "User-Agent": "node", "Sec-Fetch-Mode": "cors" },
      },
    );
    expect(res.status).toBe(200);
    expect(((await res.json()) as { activities: unknown[] }).activities).toHaveLength(100);
    expect(await stored()).toBe(100);
  });

  it("accepts either of two tokens during a rotation", async () => {
    const rotating = { ...open, SERVER_TOKEN: "old-token, new-token" };
    for (const token of ["old-token", "new-token"]) {
      expect((await postWith(rotating, { activities: [person(unique("rot"))] }, { origin: null, ...bearer(token) })).status).toBe(200);
    }
  });

  it("refuses a wrong token with 401, forwards nothing and never echoes it", async () => {
    for (const authorization of ["Bearer wrong-token", `Bearer ${SERVER_TOKEN}x`, "Bearer", `Bearer ${SERVER_TOKEN.slice(0, -1)}`]) {
      const res = await postWith(
        open,
        { activities: [person(unique("bad"))] },
        { origin: null, headers: { Authorization: authorization } },
      );
      expect(res.status).toBe(401);
      const text = await res.text();
      expect(text).toContain("headers.authorization");
      expect(text).not.toContain("wrong-token");
    }
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("refuses any token when none is configured", async () => {
    const res = await postWith({ SERVER_TOKEN: undefined }, { activities: [person(unique("none"))] }, { origin: null, ...bearer("") });
    expect(res.status).toBe(401);
  });

  it("still applies validation and the per-contact limit to a server", async () => {
    const limited = { ...open, CONTACT_ACTIVITY_LIMIT: "2" };
    const eve = unique("server-eve");
    const options = { origin: null, ...bearer() };
    expect((await postWith(limited, { activities: [person(eve), person(eve)] }, options)).status).toBe(200);
    expect((await postWith(limited, { activities: [person(eve)] }, options)).status).toBe(429);
    expect((await postWith(limited, { activities: [{ activity_id: "act:cm:nope" }] }, options)).status).toBe(400);
  });

  it("needs no identity token in signed mode: a backend speaks for anyone it sends", async () => {
    const signed = { ...open, IDENTITY_SECRET: "identity-secret-for-tests" };
    expect((await postWith(signed, { activities: [person(unique("a")), person(unique("b"))] }, { origin: null, ...bearer() })).status).toBe(
      200,
    );
    expect((await postWith(signed, { activities: [person(unique("c"))] })).status).toBe(401);
  });
});

describe("the ledger records each member once", () => {
  const ledger = () => env.LIMIT_LEDGER.get(env.LIMIT_LEDGER.idFromName(`records-${crypto.randomUUID()}`));
  const HOUR = 60 * 60 * 1000;
  // Around the rows one statement records (32: 96 values and the time, of the 100 a statement may bind).
  for (const n of [1, 31, 32, 33, 64, 65, 100])
    it(`counts ${n} members reported in one call, each once, however often the call names it`, async () => {
      const now = Date.now();
      const members = Array.from({ length: n }, (_, i) => `m${i}`);
      // Every member named again, inside its statement's rows and across statements.
      const add: [string, number][] = [...members, ...members.slice().reverse(), members[0] as string].map((m) => [m, now]);
      const stub = ledger();
      const [first] = await stub.sync([{ key: "k", window: HOUR, add, probe: [] }], now);
      expect(first?.count).toBe(n);
      // Reported again (a report that timed out): still counted once, still dated from the first report.
      const [again] = await stub.sync([{ key: "k", window: HOUR, add: add.map(([m]) => [m, now + 1000]), probe: members }], now + 1000);
      expect(again?.count).toBe(n);
      expect(again?.known).toEqual(members.map(() => now + HOUR));
      // Past the window, each counts again, from its new report.
      const later = now + HOUR + 1;
      const [renewed] = await stub.sync([{ key: "k", window: HOUR, add: add.map(([m]) => [m, later]), probe: [] }], later);
      expect(renewed).toMatchObject({ count: n, freesAt: later + HOUR });
    });
});

describe("the ledger's counters in memory", () => {
  const HOUR = 60 * 60 * 1000;

  it("counts each member once, and knows it, after counting more members than it keeps in memory", async () => {
    const stub = env.LIMIT_LEDGER.get(env.LIMIT_LEDGER.idFromName(`memory-${crypto.randomUUID()}`));
    const now = Date.now();
    const counter = (c: number) => Array.from({ length: 1000 }, (_, i) => `c${c}m${i}`);
    const counters = Math.ceil(CACHED_MEMBERS / 1000) + 2;
    // The first counter, then enough others that it leaves memory and only its rows hold it.
    for (let c = 0; c < counters; c += 10)
      await stub.sync(
        Array.from({ length: Math.min(10, counters - c) }, (_, j) => ({
          key: `k${c + j}`,
          window: HOUR,
          add: counter(c + j).map((m): [string, number] => [m, now]),
          probe: [],
        })),
        now,
      );
    const members = counter(0);
    const [first] = await stub.sync(
      [{ key: "k0", window: HOUR, add: [...members, "new"].map((m) => [m, now + 1000]), probe: [members[0] as string, "never"] }],
      now + 1000,
    );
    expect(first).toMatchObject({ count: 1001, known: [now + HOUR, 0], freesAt: now + HOUR });
    // Back in memory: the same answer, the new member counted once.
    const [again] = await stub.sync([{ key: "k0", window: HOUR, add: [["new", now + 2000]], probe: ["new"] }], now + 2000);
    expect(again).toMatchObject({ count: 1001, known: [now + 1000 + HOUR] });
  });
});

describe("the ledger's counters across memory and its rows", () => {
  const HOUR = 60 * 60 * 1000;
  const ledger = () => env.LIMIT_LEDGER.get(env.LIMIT_LEDGER.idFromName(`rows-${crypto.randomUUID()}`));
  const members = (prefix: string, n: number, at: number) => Array.from({ length: n }, (_, i): [string, number] => [`${prefix}${i}`, at]);

  it("counts both members of a counter one call names twice, around counters of more members than memory keeps", async () => {
    const stub = ledger();
    const now = Date.now();
    // Between the counter's two entries, enough members that it leaves memory before its row is written.
    await stub.sync(
      [
        { key: "k", window: HOUR, add: [["a", now]], probe: [] },
        { key: "wide", window: HOUR, add: members("w", CACHED_MEMBERS + 1, now), probe: [] },
        { key: "other", window: HOUR, add: [["o", now]], probe: [] },
        { key: "k", window: HOUR, add: [["b", now]], probe: [] },
      ],
      now,
    );
    const [k] = await stub.sync([{ key: "k", window: HOUR, add: [], probe: ["a", "b"] }], now + 1);
    expect(k).toMatchObject({ count: 2, known: [now + HOUR, now + HOUR] });
  });

  for (const counters of [15, 16, 17, 33, 100])
    it(`counts on from its rows after the object restarts, for a call of ${counters} counters of one to three rows`, async () => {
      const stub = ledger();
      const now = Date.now();
      const entries = Array.from({ length: counters }, (_, c) => ({
        key: `k${c}`,
        window: HOUR,
        add: members("m", 1 + (c % 3) * 64, now),
        probe: [],
      }));
      await stub.sync(entries, now);
      // A new instance over the same storage: what a restart mid-window leaves (memory empty, the rows kept).
      const after = await runInDurableObject(stub, (_, state) =>
        new LimitLedger(state, env).sync(
          entries.map(({ key }) => ({ key, window: HOUR, add: [["new", now + 1]], probe: ["m0", "m128"] })),
          now + 1,
        ),
      );
      expect(after.map((a) => [a.count, a.known])).toEqual(
        entries.map(({ add }) => [add.length + 1, [now + HOUR, add.length > 128 ? now + HOUR : 0]]),
      );
    });
});

describe("the ledger counts a rolling window", () => {
  const ledger = () => env.LIMIT_LEDGER.get(env.LIMIT_LEDGER.idFromName(`window-${crypto.randomUUID()}`));
  const HOUR = 60 * 60 * 1000;
  const entry = (add: [string, number][], probe: string[] = []) => [{ key: "k", window: HOUR, add, probe }];

  it("forgets each member when its own window ends, and frees the next slot when the oldest left leaves", async () => {
    const stub = ledger();
    const t0 = Date.now();
    await stub.sync(entry([["a", t0]]), t0);
    await stub.sync(entry([["b", t0 + 1000]]), t0 + 1000);
    const [both] = await stub.sync(entry([["c", t0 + 2000]], ["a", "b", "x"]), t0 + 2000);
    expect(both).toMatchObject({ count: 3, known: [t0 + HOUR, t0 + 1000 + HOUR, 0], freesAt: t0 + HOUR });
    // a has left; b and c still count, and a counts again once reported again.
    const [after] = await stub.sync(entry([], ["a", "b"]), t0 + HOUR);
    expect(after).toMatchObject({ count: 2, known: [0, t0 + 1000 + HOUR], freesAt: t0 + 1000 + HOUR });
    const [again] = await stub.sync(entry([["a", t0 + HOUR + 5]]), t0 + HOUR + 5);
    expect(again).toMatchObject({ count: 3, freesAt: t0 + 1000 + HOUR });
  });

  it("keeps counting a counter of more members than one row holds, each member once, as members leave", async () => {
    const stub = ledger();
    const t0 = Date.now();
    const early = Array.from({ length: 100 }, (_, i) => `early${i}`);
    const late = Array.from({ length: 100 }, (_, i) => `late${i}`);
    for (let i = 0; i < 100; i += 10) await stub.sync(entry(early.slice(i, i + 10).map((m) => [m, t0])), t0);
    const [all] = await stub.sync(entry([...early, ...late].map((m) => [m, t0 + 1000])), t0 + 1000);
    expect(all?.count).toBe(200);
    const [probed] = await stub.sync(entry([], [early[99] as string, late[0] as string, late[99] as string, "never"]), t0 + 1000);
    expect(probed?.known).toEqual([t0 + HOUR, t0 + 1000 + HOUR, t0 + 1000 + HOUR, 0]);
    // The early hundred leave together; the late ones stay, and one more makes 101.
    const [left] = await stub.sync(entry([...late, "more"].map((m) => [m, t0 + HOUR])), t0 + HOUR);
    expect(left).toMatchObject({ count: 101, freesAt: t0 + 1000 + HOUR });
  });
});

describe("a ledger that holds a row per member", () => {
  const HOUR = 60 * 60 * 1000;

  it("counts the members it held before, each once, and forgets those whose time has run out", async () => {
    const stub = env.LIMIT_LEDGER.get(env.LIMIT_LEDGER.idFromName(`rows-${crypto.randomUUID()}`));
    const now = Date.now();
    // The table a deployed ledger holds: one row per counter and member.
    await runInDurableObject(stub, (_, state) => {
      const sql = state.storage.sql;
      sql.exec(
        "CREATE TABLE members (counter TEXT NOT NULL, member TEXT NOT NULL, expires INTEGER NOT NULL, PRIMARY KEY (counter, member)) WITHOUT ROWID",
      );
      for (let i = 0; i < 70; i++) sql.exec("INSERT INTO members VALUES (?, ?, ?)", "full", `m${i}`, now + HOUR - i);
      sql.exec("INSERT INTO members VALUES (?, ?, ?)", "other", "x", now + 60_000);
      sql.exec("INSERT INTO members VALUES (?, ?, ?)", "other", "gone", now - 1);
    });
    const [full, other] = await stub.sync(
      [
        {
          key: "full",
          window: HOUR,
          add: [
            ["m0", now],
            ["m69", now],
            ["new", now],
          ],
          probe: ["m5"],
        },
        { key: "other", window: HOUR, add: [], probe: ["x", "gone"] },
      ],
      now,
    );
    expect(full).toMatchObject({ count: 71, known: [now + HOUR - 5], freesAt: now + HOUR - 69 });
    expect(other).toMatchObject({ count: 1, known: [now + 60_000, 0], freesAt: now + 60_000 });
    // Moved once: the old table is gone, and the counts go on from the packed rows.
    const tables = await runInDurableObject(stub, (_, state) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
        .toArray()
        .map((t) => t.name),
    );
    expect(tables).not.toContain("members");
    const [later] = await stub.sync([{ key: "full", window: HOUR, add: [["m1", now + 20]], probe: [] }], now + 20);
    expect(later?.count).toBe(71);
  });
});

describe("a ledger that holds rows of 32-digit members", () => {
  const HOUR = 60 * 60 * 1000;
  const hex32 = () => crypto.randomUUID().replaceAll("-", "");

  it("counts each of those members once, whether an isolate names it by 32 digits or by the first MEMBER_CHARS", async () => {
    const stub = env.LIMIT_LEDGER.get(env.LIMIT_LEDGER.idFromName(`long-${crypto.randomUUID()}`));
    const now = Date.now();
    const held = [hex32(), hex32(), hex32()];
    // The row a ledger wrote while isolates sent members as 32 digits.
    await runInDurableObject(stub, (_, state) => {
      const sql = state.storage.sql;
      sql.exec("CREATE TABLE IF NOT EXISTS counters (k TEXT, p INT, m TEXT, n INT, f INT, e INT, PRIMARY KEY (k, p))");
      const m = held.map((member) => `,"${member}",${now + HOUR}`).join("");
      sql.exec("INSERT INTO counters VALUES (?, ?, ?, ?, ?, ?)", "k", 0, m, held.length, now + HOUR, now + HOUR);
    });
    const [h0, h1, h2] = held as [string, string, string];
    const fresh = hex32().slice(0, MEMBER_CHARS);
    const entry = {
      key: "k",
      window: HOUR,
      // A member as a new isolate sends it, one as an isolate of the older code still does, and a new one.
      add: [h0.slice(0, MEMBER_CHARS), h1, fresh].map((m): [string, number] => [m, now]),
      probe: [h2.slice(0, MEMBER_CHARS), h2, fresh],
    };
    // Probes are answered before the call's members are recorded: the new one is not known yet.
    const [first] = await stub.sync([entry], now);
    expect(first).toMatchObject({ count: 4, known: [now + HOUR, now + HOUR, 0] });
    // After a restart, from its rows alone (the old row, and the new member's): the same four.
    const [after] = await runInDurableObject(stub, (_, state) => new LimitLedger(state, env).sync([entry], now + 1));
    expect(after).toMatchObject({ count: 4, known: [now + HOUR, now + HOUR, now + HOUR] });
  });
  it("counts on across a row of 32-digit members of which one has left the window, and after the row is written again", async () => {
    const stub = env.LIMIT_LEDGER.get(env.LIMIT_LEDGER.idFromName(`long-${crypto.randomUUID()}`));
    const now = Date.now();
    const held = [hex32(), hex32(), hex32()];
    const expiries = [now + 10, now + HOUR, now + HOUR];
    await runInDurableObject(stub, (_, state) => {
      const sql = state.storage.sql;
      sql.exec("CREATE TABLE IF NOT EXISTS counters (k TEXT, p INT, m TEXT, n INT, f INT, e INT, PRIMARY KEY (k, p))");
      const m = held.map((member, i) => `,"${member}",${expiries[i]}`).join("");
      sql.exec("INSERT INTO counters VALUES (?, ?, ?, ?, ?, ?)", "k", 0, m, held.length, now + 10, now + HOUR);
    });
    const short = held.map((h) => h.slice(0, MEMBER_CHARS));
    const later = now + 20;
    // The first has left the window: a new member and the first again count, the others do not.
    const entry = {
      key: "k",
      window: HOUR,
      add: [
        [hex32().slice(0, MEMBER_CHARS), later],
        [short[1], later],
      ] as [string, number][],
      probe: short,
    };
    const [first] = await stub.sync([entry], later);
    expect(first).toMatchObject({ count: 3, known: [0, now + HOUR, now + HOUR] });
    const again = { key: "k", window: HOUR, add: [[short[0], later]] as [string, number][], probe: [] };
    expect((await stub.sync([again], later))[0]).toMatchObject({ count: 4 });
    const [after] = await runInDurableObject(stub, (_, state) => new LimitLedger(state, env).sync([{ ...again, probe: held }], later + 1));
    expect(after).toMatchObject({ count: 4, known: [later + HOUR, now + HOUR, now + HOUR] });
  });

  it("starts a new row past a full row of 32-digit members, and counts both", async () => {
    const stub = env.LIMIT_LEDGER.get(env.LIMIT_LEDGER.idFromName(`long-${crypto.randomUUID()}`));
    const now = Date.now();
    const held = Array.from({ length: 64 }, hex32);
    await runInDurableObject(stub, (_, state) => {
      const sql = state.storage.sql;
      sql.exec("CREATE TABLE IF NOT EXISTS counters (k TEXT, p INT, m TEXT, n INT, f INT, e INT, PRIMARY KEY (k, p))");
      const m = held.map((member) => `,"${member}",${now + HOUR}`).join("");
      sql.exec("INSERT INTO counters VALUES (?, ?, ?, ?, ?, ?)", "k", 0, m, held.length, now + HOUR, now + HOUR);
    });
    const fresh = Array.from({ length: 5 }, () => hex32().slice(0, MEMBER_CHARS));
    const entry = {
      key: "k",
      window: HOUR,
      add: [...held.slice(0, 3).map((h) => h.slice(0, MEMBER_CHARS)), ...fresh].map((m): [string, number] => [m, now]),
      probe: [],
    };
    expect((await stub.sync([entry], now))[0]).toMatchObject({ count: 69 });
    const [after] = await runInDurableObject(stub, (_, state) => new LimitLedger(state, env).sync([entry], now + 1));
    expect(after).toMatchObject({ count: 69 });
  });
});

describe("one contact, however its identifiers are written", () => {
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
