/**
 * Every event is credited to the person identified when it was tracked: after a logout in another
 * page or tab, on a logout or login page whose calls the loader queued, and never to whoever
 * identifies hours after an anonymous event.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { HOLD_MS } from "../../snippet/src/core.ts";
import { MemoryStorage, openPage, settle, wait } from "./helpers.ts";

const NOW = Date.parse("2026-11-27T06:00:00.000Z");
beforeEach(() => {
  vi.useFakeTimers({ now: NOW });
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("the right person", () => {
  it("credits a page view restored from the back/forward cache to the person identified now", async () => {
    const storage = new MemoryStorage();
    const p1 = openPage({ storage, pageviews: "act:cm:viewed-page" });
    p1.relay("identify", { email: "x@example.com" });
    await settle();
    // Into the back/forward cache: frozen, it hears no storage event.
    p1.hide();
    storage.windows.delete(p1.w);
    const p2 = openPage({ storage });
    p2.relay("reset");
    p2.relay("identify", { email: "y@example.com" });
    await settle();
    p2.leave();
    // Back: p1 never heard of the logout (it was frozen).
    storage.windows.add(p1.w);
    p1.w.dispatchEvent(Object.assign(new p1.w.Event("pageshow"), { persisted: true }));
    await settle();
    const views = p1.activities().filter((a) => a.activity_id === "act:cm:viewed-page");
    expect(views.map((a) => a.fields?.["str::email"])).toEqual(["x@example.com", "y@example.com"]);
  });

  it("credits an event tracked in a tab to the person another tab identified a moment before", async () => {
    const storage = new MemoryStorage();
    const a = openPage({ storage });
    const b = openPage({ storage });
    a.relay("identify", { email: "x@example.com" });
    await wait(0);
    // B has not heard yet (its storage event comes a task later).
    a.relay("reset");
    a.relay("identify", { email: "y@example.com" });
    b.relay("track", "logged-in");
    await settle();
    expect(b.activities().map((x) => x.fields?.["str::email"])).toEqual(["y@example.com"]);
  });

  it("records the start-up page view after the loader's queued calls (a logout page's reset, a login page's identify)", async () => {
    const storage = new MemoryStorage();
    const before = openPage({ storage });
    before.relay("identify", { email: "x@example.com" });
    await settle();
    before.leave();
    // The login page: its inline calls run as boot replays relay.q, right after the client starts.
    const login = openPage({ storage, pageviews: "act:cm:viewed-page" });
    login.relay("reset");
    login.relay("identify", { email: "y@example.com" });
    await settle();
    expect(login.activities().map((x) => [x.activity_id, x.fields?.["str::email"]])).toEqual([["act:cm:viewed-page", "y@example.com"]]);
  });

  it("drops, counts and explains an event held longer than HOLD_MS instead of crediting the next person", async () => {
    const storage = new MemoryStorage();
    const anonymous = openPage({ storage, debug: true });
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    anonymous.relay("track", "viewed-page", { "int::v": 1 });
    await settle();
    anonymous.leave();
    vi.setSystemTime(Date.now() + HOLD_MS + 1);
    const later = openPage({ storage, debug: true });
    later.relay("track", "viewed-page", { "int::v": 2 });
    later.relay("identify", { email: "next@example.com" });
    await settle();
    expect(later.activities().map((a) => a.attributes?.["int::v"])).toEqual([2]);
    expect(storage.state()?.d).toBe(1);
    expect(warn).toHaveBeenCalledWith("relay:", "E", expect.objectContaining({ activity_id: "viewed-page" }));
  });
});
