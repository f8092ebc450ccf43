import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FLUSH_MS, MAX_QUEUE, STORAGE_KEY, type State } from "../../snippet/src/core.ts";
import { MemoryStorage, openPage, wait } from "./helpers.ts";

beforeEach(() => {
  vi.useFakeTimers({ now: Date.parse("2026-11-27T06:00:00.000Z") });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("identify", () => {
  it("maps the shorthands to Ortto's person field ids, and a phone string to Ortto's phone object", async () => {
    const page = openPage();
    page.relay("identify", {
      email: "chris@example.com",
      first: "Chris",
      last: "Smith",
      ei: "cus_42",
      phone: "+61 401-234-567",
      "str:cm:company": "Vandalay",
    });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
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
    await vi.runAllTimersAsync();
    // One person's token per request: two requests.
    expect(page.sent.map((s) => [s.body.identity_token, s.body.activities.map((a) => a.fields)])).toEqual([
      ["ta", [{ "str::email": "a@example.com", "str::first": "Ann", "str::last": "Lee" }]],
      ["tb", [{ "str::email": "b@example.com" }]],
    ]);
  });

  it("trims spaces around the email (the shorthand and str::email), keeping its case", async () => {
    const page = openPage();
    page.relay("identify", { email: " Chris@Example.com " });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    page.relay("identify", { "str::email": "\tann@example.com\n", first: " Ann " });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.activities().map((a) => a.fields)).toEqual([
      { "str::email": "Chris@Example.com" },
      // Only the email: other fields are sent as given.
      { "str::email": "ann@example.com", "str::first": " Ann " },
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
    await vi.runAllTimersAsync();
    expect(page.activities().map((a) => a.fields)).toEqual([{ "str::email": "a@example.com" }, { "str::email": "a@example.com" }]);
  });
});

describe("events before identify", () => {
  it("are held, then sent with the person's fields once identified", async () => {
    const page = openPage();
    page.relay("track", "viewed-page", { "str:cm:page-title": "Home" });
    page.relay("track", "logged-in");
    await vi.runAllTimersAsync();
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
    for (let n = 0; n < MAX_QUEUE + 20; n++) openPage({ storage }).relay("track", "viewed-page", { "int::v": n });
    expect(storage.state()?.q).toHaveLength(MAX_QUEUE);
    expect(storage.state()?.d).toBe(20);
    const page = openPage({ storage });
    page.relay("identify", { email: "chris@example.com" });
    await vi.runAllTimersAsync();
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
    await vi.runAllTimersAsync();
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
    await vi.runAllTimersAsync();
    expect(page.fetch).not.toHaveBeenCalled();
    page.relay("identify", fields);
    await wait(FLUSH_MS);
    expect(page.activities()).toHaveLength(1);
  });

  it("stay held when an earlier build stored them with fields but no identifying field", async () => {
    const storage = new MemoryStorage();
    const page = openPage({ storage });
    page.relay("track", "logged-in");
    // What the previous build stored after identify({ first: "Chris" }).
    const state = storage.state() as State;
    for (const i of state.q) i.a.fields = { "str::first": "Chris" };
    storage.data.set(STORAGE_KEY, JSON.stringify({ ...state, i: { f: { "str::first": "Chris" } } }));

    const next = openPage({ storage });
    await vi.runAllTimersAsync();
    expect(page.fetch).not.toHaveBeenCalled();
    expect(next.fetch).not.toHaveBeenCalled();
    next.relay("identify", { email: "chris@example.com" });
    await wait(FLUSH_MS);
    expect(next.activities().map((a) => a.fields)).toEqual([{ "str::first": "Chris", "str::email": "chris@example.com" }]);
  });

  it("are forgotten by reset (they belong to the visitor being forgotten)", async () => {
    const page = openPage();
    page.relay("track", "viewed-page");
    page.relay("reset");
    page.relay("identify", { email: "someone-else@example.com" });
    await vi.runAllTimersAsync();
    expect(page.fetch).not.toHaveBeenCalled();
  });
});
