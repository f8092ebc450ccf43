import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FLUSH_MS } from "../../snippet/src/core.ts";
import { MemoryStorage, openPage, wait } from "./helpers.ts";

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
    await vi.runAllTimersAsync();
    page.hide();
    expect(page.fetch).not.toHaveBeenCalled();
    expect(page.beacon).not.toHaveBeenCalled();
    expect(page.storage.writes).toBe(0);

    page.relay("consent", true);
    await wait(0);
    expect(page.activities().map((a) => [a.activity_id, a.fields])).toEqual([["act:cm:logged-in", { "str::email": "chris@example.com" }]]);
    expect(page.storage.state()?.c).toBe(true);
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

  it("forgets the identity and every unsent event on refusal, keeping only the refusal", async () => {
    const storage = new MemoryStorage();
    const page = openPage({ storage, consent: "required" });
    page.relay("consent", true);
    page.answers.push("network");
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    page.relay("consent", false);
    expect(storage.state()).toEqual({ q: [], d: 0, f: 0, c: false });
    page.relay("track", "logged-in");
    await vi.runAllTimersAsync();
    expect(page.sent).toHaveLength(1);
    expect(storage.state()).toEqual({ q: [], d: 0, f: 0, c: false });
    // A later page stays refused.
    const next = openPage({ storage, consent: "required" });
    next.relay("identify", { email: "chris@example.com" });
    next.relay("track", "logged-in");
    await vi.runAllTimersAsync();
    expect(next.fetch).not.toHaveBeenCalled();
  });

  it("lets a page without data-consent be opted out with relay('consent', false)", async () => {
    const page = openPage();
    page.relay("consent", false);
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await vi.runAllTimersAsync();
    expect(page.fetch).not.toHaveBeenCalled();
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
    await vi.runAllTimersAsync();
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
    await vi.runAllTimersAsync();
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
