import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FLUSH_MS } from "../../snippet/src/core.ts";
import { MemoryStorage, openPage, settle, wait } from "./helpers.ts";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('data-consent="required"', () => {
  it("sends and stores nothing until consent, then sends what was held", async () => {
    const page = openPage({ consent: "required" });
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await settle();
    page.hide();
    expect(page.fetch).not.toHaveBeenCalled();
    expect(page.beacon).not.toHaveBeenCalled();
    expect(page.storage.writes).toBe(0);

    page.relay("consent", true);
    await wait(0);
    expect(page.activities().map((a) => [a.activity_id, a.fields])).toEqual([["act:cm:logged-in", { "str::email": "chris@example.com" }]]);
    expect(page.storage.state()?.c).toBe(true);
  });

  it("keeps what it holds in memory across a back/forward cache restore, and sends it on consent", async () => {
    const page = openPage({ consent: "required" });
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    page.hide();
    page.w.dispatchEvent(Object.assign(new page.w.Event("pageshow"), { persisted: true }));
    page.relay("consent", true);
    await wait(0);
    expect(page.activities().map((a) => a.activity_id)).toEqual(["act:cm:logged-in"]);
  });

  it("remembers consent on later pages", async () => {
    const storage = new MemoryStorage();
    openPage({ storage, consent: "required" }).relay("consent", true);
    const next = openPage({ storage, consent: "required" });
    next.relay("identify", { email: "chris@example.com" });
    next.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(next.sent).toHaveLength(1);
  });

  it("forgets the identity and every unsent event on refusal, and stores nothing at all", async () => {
    const storage = new MemoryStorage();
    const page = openPage({ storage, consent: "required" });
    page.relay("consent", true);
    page.answers.push("network");
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(storage.state()?.q).toHaveLength(1);
    page.relay("consent", false);
    // Not even the refusal: with data-consent="required", no consent is already a no.
    expect(storage.data.size).toBe(0);
    page.relay("track", "logged-in");
    await settle();
    expect(page.sent).toHaveLength(1);
    expect(storage.data.size).toBe(0);
    // A later page stays refused.
    const next = openPage({ storage, consent: "required" });
    next.relay("identify", { email: "chris@example.com" });
    next.relay("track", "logged-in");
    await settle();
    expect(next.fetch).not.toHaveBeenCalled();
  });

  it("withdraws consent in every tab: their queues and the identity are forgotten", async () => {
    const storage = new MemoryStorage();
    const tabA = openPage({ storage, consent: "required" });
    tabA.relay("consent", true);
    const tabB = openPage({ storage, consent: "required" });
    tabB.relay("track", "logged-in");
    await wait(0);
    expect(storage.tabs()).toHaveLength(1);
    tabA.relay("consent", false);
    await wait(0);
    expect(storage.data.size).toBe(0);
    tabB.relay("identify", { email: "chris@example.com" });
    await settle();
    expect(tabB.fetch).not.toHaveBeenCalled();
    expect(storage.data.size).toBe(0);
  });

  it("learns consent given in another tab, and sends what it held", async () => {
    const storage = new MemoryStorage();
    const tabA = openPage({ storage, consent: "required" });
    tabA.relay("identify", { email: "chris@example.com" });
    tabA.relay("track", "logged-in");
    await settle();
    expect(storage.data.size).toBe(0);
    const tabB = openPage({ storage, consent: "required" });
    tabB.relay("consent", true);
    await wait(FLUSH_MS);
    expect(tabA.activities().map((a) => [a.activity_id, a.fields])).toEqual([["act:cm:logged-in", { "str::email": "chris@example.com" }]]);
    // And the identity it held joins the shared state, for tab B and the next pages.
    expect(storage.state()?.i).toEqual({ f: { email: "chris@example.com" } });
  });

  it("lets a page without data-consent be opted out with relay('consent', false), remembered (only the refusal) across pages", async () => {
    const storage = new MemoryStorage();
    const page = openPage({ storage });
    page.relay("consent", false);
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await settle();
    expect(page.fetch).not.toHaveBeenCalled();
    expect([...storage.data]).toEqual([["relay", '{"c":false}']]);
    const next = openPage({ storage });
    next.relay("identify", { email: "chris@example.com" });
    next.relay("track", "logged-in");
    await settle();
    expect(next.fetch).not.toHaveBeenCalled();
  });
});

describe("Global Privacy Control", () => {
  it("means no tracking: nothing sent, nothing stored, and what an earlier page stored is removed", async () => {
    const storage = new MemoryStorage();
    storage.data.set("relay", JSON.stringify({ q: [], d: 0, f: 0, i: { f: { "str::email": "chris@example.com" } } }));
    const page = openPage({ storage, globalPrivacyControl: true });
    expect(storage.data.size).toBe(0);
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await settle();
    page.hide();
    expect(page.fetch).not.toHaveBeenCalled();
    expect(page.beacon).not.toHaveBeenCalled();
    expect(storage.writes).toBe(0);
  });

  it("wins over relay('consent', true)", async () => {
    const page = openPage({ consent: "required", globalPrivacyControl: true });
    page.relay("consent", true);
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await settle();
    expect(page.fetch).not.toHaveBeenCalled();
    expect(page.storage.writes).toBe(0);
  });

  it('is ignored with data-gpc="ignore"', async () => {
    const page = openPage({ gpc: "ignore", globalPrivacyControl: true });
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
  });

  it("only counts when it is exactly true", async () => {
    const page = openPage({ globalPrivacyControl: false });
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
  });
});
