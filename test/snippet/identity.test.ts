import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FLUSH_MS, MAX_QUEUE, STORAGE_KEY, type State } from "../../snippet/src/core.ts";
import { MemoryStorage, openPage, settle, wait } from "./helpers.ts";

beforeEach(() => {
  vi.useFakeTimers({ now: Date.parse("2026-11-27T06:00:00.000Z") });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("identify", () => {
  it("sends the shorthands as given, which the relay expands to Ortto's ids (a phone string to Ortto's phone object)", async () => {
    const page = openPage();
    const fields = {
      email: "chris@example.com",
      first: "Chris",
      last: "Smith",
      ei: "cus_42",
      phone: "+61 401-234-567",
      "str:cm:company": "Vandalay",
    };
    page.relay("identify", fields);
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    // On the wire: the short forms (the relay's mapping need not be in every page's script).
    expect(JSON.parse(page.sent[0]?.raw as string).a[0]).toMatchObject({ activity_id: "logged-in", fields });
    // As the relay reads it.
    expect(page.activities()[0]?.activity_id).toBe("act:cm:logged-in");
    expect(page.activities()[0]?.fields).toEqual({
      "str::email": "chris@example.com",
      "str::first": "Chris",
      "str::last": "Smith",
      "str::ei": "cus_42",
      "phn::phone": { phone: "+61401234567", parse_with_country_code: true },
      "str:cm:company": "Vandalay",
    });
  });

  it("passes Ortto's ids and phone objects through unchanged", async () => {
    const page = openPage();
    page.relay("identify", { "str::email": "chris@example.com", "phn::phone": { c: "61", n: "401234567" } });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.activities()[0]?.fields).toEqual({ "str::email": "chris@example.com", "phn::phone": { c: "61", n: "401234567" } });
  });

  it("sends the token as the request's identity_token", async () => {
    const page = openPage();
    page.relay("identify", { email: "chris@example.com" }, { token: "sig.abc" });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.sent[0]?.body.identity_token).toBe("sig.abc");
    expect(page.sent[0]?.body.activities[0]).not.toHaveProperty("identity_token");
  });

  it("is remembered on the next page until reset", async () => {
    const storage = new MemoryStorage();
    const first = openPage({ storage });
    first.relay("identify", { email: "chris@example.com" }, { token: "t1" });

    const second = openPage({ storage, url: "https://shop.example/cart" });
    second.relay("track", "placed-order");
    await wait(FLUSH_MS);
    // Whichever page flushes first sends it (they share the queue, like tabs).
    const [request] = [...first.sent, ...second.sent];
    expect(request?.body.activities[0]?.fields).toEqual({ "str::email": "chris@example.com" });
    expect(request?.body.identity_token).toBe("t1");

    second.relay("reset");
    const third = openPage({ storage });
    third.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(first.sent.length + second.sent.length + third.sent.length).toBe(1);
    expect(storage.state()?.i).toBeUndefined();
  });

  it("merges fields without an identifying field into the identity, and starts anew with one", async () => {
    const page = openPage();
    page.relay("identify", { email: "a@example.com", first: "Ann" }, { token: "ta" });
    page.relay("identify", { last: "Lee" });
    page.relay("track", "logged-in", { n: 1 });
    page.relay("identify", { email: "b@example.com" }, { token: "tb" });
    page.relay("track", "logged-in", { n: 2 });
    await settle();
    // One person's token per request: two requests.
    expect(page.sent.map((s) => [s.body.identity_token, s.body.activities.map((a) => a.fields)])).toEqual([
      ["ta", [{ "str::email": "a@example.com", "str::first": "Ann", "str::last": "Lee" }]],
      ["tb", [{ "str::email": "b@example.com" }]],
    ]);
  });

  it("completes an identity that had no identifying field instead of replacing it", async () => {
    const page = openPage();
    page.relay("identify", { first: "Chris" }, { token: "t" });
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.sent[0]?.body.identity_token).toBe("t");
    expect(page.activities()[0]?.fields).toEqual({ "str::first": "Chris", "str::email": "chris@example.com" });
  });

  it("keeps queued events with the identity they were recorded under, after reset", async () => {
    const page = openPage();
    page.answers.push(503);
    page.relay("identify", { email: "a@example.com" });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    page.relay("reset");
    await settle();
    expect(page.activities().map((a) => a.fields)).toEqual([{ "str::email": "a@example.com" }, { "str::email": "a@example.com" }]);
  });
});

describe("events before identify", () => {
  it("are held, then sent with the person's fields once identified", async () => {
    const page = openPage();
    page.relay("track", "viewed-page", { "str:cm:page-title": "Home" });
    page.relay("track", "logged-in");
    await settle();
    expect(page.fetch).not.toHaveBeenCalled();
    expect(page.storage.state()?.q).toHaveLength(2);

    page.relay("identify", { email: "chris@example.com" }, { token: "t" });
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
    expect(page.sent[0]?.body.identity_token).toBe("t");
    expect(page.activities().map((a) => [a.activity_id, a.fields])).toEqual([
      ["act:cm:viewed-page", { "str::email": "chris@example.com" }],
      ["act:cm:logged-in", { "str::email": "chris@example.com" }],
    ]);
    // They keep the time they happened, not the time of identify.
    vi.setSystemTime(Date.parse("2026-11-27T07:00:00.000Z"));
    expect(page.activities()[0]?.created).toBe("2026-11-27T06:00:00.000Z");
  });

  it("are held across pages, and bounded", async () => {
    const storage = new MemoryStorage();
    for (let n = 0; n < MAX_QUEUE + 20; n++) {
      // Each page adopts what the one before left, adds one, and is left in turn.
      const page = openPage({ storage });
      page.relay("track", "viewed-page", { "int::v": n });
      page.leave();
    }
    expect(storage.state()?.q).toHaveLength(MAX_QUEUE);
    expect(storage.state()?.d).toBe(20);
    const page = openPage({ storage });
    page.relay("identify", { email: "chris@example.com" });
    await settle();
    expect(page.activities()).toHaveLength(MAX_QUEUE);
    expect(page.activities()[0]?.attributes?.["int::v"]).toBe(20);
  });

  it("stay held after identify without an identifying field, until one is given", async () => {
    const page = openPage();
    page.relay("track", "viewed-page");
    page.relay("identify", { first: "Chris", "str:cm:company": "Vandalay" });
    page.relay("track", "logged-in");
    // An email of spaces only is no email either.
    page.relay("identify", { email: "   " });
    await settle();
    // The relay would refuse them (400: no str::email, str::ei or phn::phone), and they would be lost.
    expect(page.fetch).not.toHaveBeenCalled();
    expect(page.storage.state()?.q).toHaveLength(2);

    page.relay("identify", { email: "chris@example.com" });
    await wait(FLUSH_MS);
    expect(page.activities().map((a) => [a.activity_id, a.fields])).toEqual([
      ["act:cm:viewed-page", { "str::first": "Chris", "str:cm:company": "Vandalay", "str::email": "chris@example.com" }],
      ["act:cm:logged-in", { "str::first": "Chris", "str:cm:company": "Vandalay", "str::email": "chris@example.com" }],
    ]);
  });

  it.each([
    ["str::ei", { ei: "cus_42" }],
    ["phn::phone", { phone: "+61 401 234 567" }],
  ])("are released by %s as the identifying field", async (_field, fields) => {
    const page = openPage();
    page.relay("identify", { first: "Chris" });
    page.relay("track", "logged-in");
    await settle();
    expect(page.fetch).not.toHaveBeenCalled();
    page.relay("identify", fields);
    await wait(FLUSH_MS);
    expect(page.activities()).toHaveLength(1);
  });

  it("stay held when an earlier page stored them with fields but no identifying field", async () => {
    const storage = new MemoryStorage();
    // What an earlier page stored (its heartbeat, left at pagehide, and its event) after identify({ first: "Chris" }) and a track.
    const held = {
      a: { activity_id: "act:cm:logged-in", key: "k1", created: "2026-11-27T05:59:00.000Z", fields: { "str::first": "Chris" } },
    };
    storage.data.set(STORAGE_KEY, JSON.stringify({ d: 0, i: { f: { "str::first": "Chris" } } } satisfies State));
    storage.data.set(`${STORAGE_KEY}:old-tab`, JSON.stringify({ h: 0 }));
    storage.data.set(`${STORAGE_KEY}:old-tab|1000000001`, JSON.stringify({ ...held, k: `${STORAGE_KEY}:old-tab|1000000001` }));

    const next = openPage({ storage });
    await settle();
    expect(next.fetch).not.toHaveBeenCalled();
    // Adopted: the earlier page's keys are gone, its event is the new page's.
    expect(storage.data.has(`${STORAGE_KEY}:old-tab`)).toBe(false);
    expect(storage.state()?.q.map((i) => i.a.key)).toEqual(["k1"]);
    next.relay("identify", { email: "chris@example.com" });
    await wait(FLUSH_MS);
    expect(next.activities().map((a) => [a.key, a.fields])).toEqual([["k1", { "str::first": "Chris", "str::email": "chris@example.com" }]]);
  });

  it("are forgotten by reset (they belong to the visitor being forgotten)", async () => {
    const page = openPage();
    page.relay("track", "viewed-page");
    page.relay("reset");
    page.relay("identify", { email: "someone-else@example.com" });
    await settle();
    expect(page.fetch).not.toHaveBeenCalled();
  });

  it("are kept when tracked after a reset, even once the device's clock has stepped back past it", async () => {
    const storage = new MemoryStorage();
    const [a, b] = [openPage({ storage }), openPage({ storage })];
    a.relay("reset");
    await vi.advanceTimersByTimeAsync(1);
    // The clock is corrected a minute back (it ran fast): the reset is a count, not a time.
    vi.setSystemTime(Date.now() - 60_000);
    a.relay("track", "logged-in", { "int::v": 1 });
    b.relay("track", "logged-in", { "int::v": 2 });
    await vi.advanceTimersByTimeAsync(1);
    a.relay("identify", { email: "next@example.com" });
    await settle();
    const sent = [a, b].flatMap((p) => p.activities().map((x) => x.attributes?.["int::v"]));
    expect(sent.sort()).toEqual([1, 2]);
    expect(storage.state()?.d ?? 0).toBe(0);
  });

  it("are kept when tracked after a reset in a page whose storage throws on every call", async () => {
    const storage = Object.assign(new MemoryStorage(), { broken: true });
    const page = openPage({ storage });
    page.relay("reset");
    page.relay("track", "logged-in", { "int::v": 1 });
    page.relay("identify", { email: "next@example.com" });
    await settle();
    expect(page.activities().map((a) => [a.attributes?.["int::v"], a.fields])).toEqual([[1, { "str::email": "next@example.com" }]]);
  });

  it("are kept when tracked after a reset made before consent (nothing stored then), once consent comes", async () => {
    const page = openPage({ consent: "required" });
    page.relay("reset");
    page.relay("track", "logged-in", { "int::v": 1 });
    page.relay("consent", true);
    page.relay("identify", { email: "next@example.com" });
    await settle();
    expect(page.activities().map((a) => [a.attributes?.["int::v"], a.fields])).toEqual([[1, { "str::email": "next@example.com" }]]);
  });

  it("are forgotten by a reset in another tab too, whether or not that tab has heard of it yet", async () => {
    const storage = new MemoryStorage();
    const [a, b, c] = [openPage({ storage }), openPage({ storage }), openPage({ storage })];
    b.relay("track", "viewed-page", { "int::v": 1 });
    c.relay("track", "viewed-page", { "int::v": 2 });
    await wait(FLUSH_MS);
    // Tab C hears nothing from now on (its storage events are late), so only its next batch can tell.
    storage.windows.delete(c.w as never);
    await vi.advanceTimersByTimeAsync(1);
    a.relay("reset");
    await vi.advanceTimersByTimeAsync(1);
    // The next person logs in; tab C tracks something of theirs.
    a.relay("identify", { email: "next@example.com" });
    c.relay("track", "logged-in", { "int::v": 3 });
    await settle();
    const sent = [a, b, c].flatMap((p) => p.activities());
    expect(sent.map((x) => [x.activity_id, x.attributes?.["int::v"], x.fields])).toEqual([
      ["act:cm:logged-in", 3, { "str::email": "next@example.com" }],
    ]);
    expect(storage.state()?.q).toEqual([]);
  });
});
