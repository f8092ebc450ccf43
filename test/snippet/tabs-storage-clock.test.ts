/**
 * Tabs that live, idle or crash; storage that is full or disabled; a device clock that steps; the
 * cost of a call and what a single-page app's URL changes count as.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FLUSH_MS, HEARTBEAT_MS, STALE_MS, STORAGE_KEY } from "../../snippet/src/core.ts";
import { MemoryStorage, openPage, settle, wait } from "./helpers.ts";

const NOW = Date.parse("2026-11-27T06:00:00.000Z");
beforeEach(() => {
  vi.useFakeTimers({ now: NOW });
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("tabs", () => {
  it("leaves a live idle tab's held events to it, however long it sits idle: a page opened later does not adopt them", async () => {
    const storage = new MemoryStorage();
    const idle = openPage({ storage });
    idle.relay("track", "viewed-page");
    // The visitor reads for 5 minutes in that tab (a single-page app: no page load), then opens another.
    await wait(5 * 60_000);
    const other = openPage({ storage });
    await settle();
    expect(storage.tabs()).toHaveLength(1);
    expect(storage.tabs()[0]?.q.map((i) => i.a.activity_id)).toEqual(["viewed-page"]);
    // Once the person is known (in the other tab), the idle tab sends its own event: once, by itself.
    other.relay("identify", { email: "chris@example.com" });
    await wait(FLUSH_MS * 2);
    expect(other.sent).toHaveLength(0);
    expect(idle.activities().map((a) => a.activity_id)).toEqual(["act:cm:viewed-page"]);
  });

  it("adopts a crashed tab's events in a page already open, once its heartbeat has stood still for STALE_MS, without a page load", async () => {
    const storage = new MemoryStorage();
    const open = openPage({ storage });
    open.relay("identify", { email: "chris@example.com" });
    await settle();
    // A tab that crashed (no pagehide): its heartbeat and its event, as it left them.
    const crashed = `${STORAGE_KEY}:crashed-tab`;
    storage.data.set(crashed, JSON.stringify({ h: NOW }));
    storage.data.set(
      `${crashed}|1000000001`,
      JSON.stringify({ a: { activity_id: "placed-order", key: "crashed-1", created: NOW }, k: `${crashed}|1000000001` }),
    );
    await wait(STALE_MS - HEARTBEAT_MS);
    // Not yet: it may be a live tab whose timers a hidden window slows down.
    expect(open.sent).toHaveLength(0);
    // Seen unchanged for STALE_MS by the open page's heartbeat timer (every HEARTBEAT_MS).
    await wait(3 * HEARTBEAT_MS);
    expect(open.activities().map((a) => [a.key, a.activity_id, a.fields])).toEqual([
      ["crashed-1", "act:cm:placed-order", { "str::email": "chris@example.com" }],
    ]);
    expect([...storage.data.keys()].filter((k) => k.startsWith(crashed))).toEqual([]);
  });

  it("adopts a gone tab's events when a key of the site's own in the snippet's names holds a value that is not JSON", async () => {
    const storage = new MemoryStorage();
    storage.data.set(`${STORAGE_KEY}:prefs`, "dark");
    const first = openPage({ storage });
    first.relay("track", "viewed-page");
    await settle();
    first.leave();
    const next = openPage({ storage });
    next.relay("identify", { email: "chris@example.com" });
    await settle();
    expect(next.activities().map((a) => a.activity_id)).toEqual(["act:cm:viewed-page"]);
  });
});

describe("storage full or disabled", () => {
  it("keeps a new identity for the page's later events when storage is full, not the one stored before it filled", async () => {
    const storage = new MemoryStorage();
    const earlier = openPage({ storage });
    earlier.relay("identify", { email: "before@example.com" });
    earlier.leave();
    // The site filled the origin's storage since.
    storage.quota = 30;
    const page = openPage({ storage });
    page.relay("reset");
    page.relay("identify", { email: "now@example.com" });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.activities().map((a) => a.fields?.["str::email"])).toEqual(["now@example.com"]);
  });

  it("explains under data-debug the events it could not store (`U`), and each one lost when the page goes (`L`)", async () => {
    for (const storage of [Object.assign(new MemoryStorage(), { quota: 30 }), Object.assign(new MemoryStorage(), { broken: true })]) {
      const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
      const page = openPage({ storage, debug: true });
      // Held (no identity yet), in memory only.
      page.relay("track", "viewed-page");
      page.relay("track", "viewed-page");
      expect(warn).toHaveBeenCalledWith("relay:", "U", expect.objectContaining({ activity_id: "viewed-page" }));
      page.leave();
      await settle();
      expect(warn.mock.calls.filter((c) => c[1] === "L")).toHaveLength(2);
      warn.mockRestore();
    }
  });
});

describe("storage that fills up", () => {
  it("leaves no stored event without its tab's heartbeat when the event takes the storage's last room: a later page adopts it", async () => {
    /** A storage whose last room an event takes: nothing more fits until something is removed. */
    class LastRoom extends MemoryStorage {
      full = false;
      override setItem(key: string, value: string) {
        if (this.full) throw new Error("QuotaExceededError");
        super.setItem(key, value);
        this.full = key.includes("|");
      }
      override removeItem(key: string) {
        if (this.data.has(key)) this.full = false;
        super.removeItem(key);
      }
    }
    const storage = new LastRoom();
    const first = openPage({ storage });
    first.relay("track", "viewed-page");
    await settle();
    for (const k of storage.data.keys()) if (k.includes("|")) expect(storage.data.has(k.split("|")[0] as string)).toBe(true);
    first.leave();
    const next = openPage({ storage });
    next.relay("identify", { email: "chris@example.com" });
    await wait(STALE_MS + 2 * HEARTBEAT_MS);
    expect(next.activities().map((a) => a.activity_id)).toEqual(["act:cm:viewed-page"]);
  });
});

describe("a device clock that steps", () => {
  it("does not wait an hour more than a 60 s Retry-After when the device's clock steps back an hour before the next page", async () => {
    const storage = new MemoryStorage();
    const page = openPage({ storage });
    page.relay("identify", { email: "chris@example.com" });
    page.answers.push({ status: 429, retryAfter: "60" });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    page.leave();
    vi.setSystemTime(Date.now() - 3_600_000);
    const next = openPage({ storage });
    // The pause as stored ends an hour and a minute from now by this page's clock: longer than the
    // relay asked for, so it is not this page's. One request; the relay, still pausing, says so again.
    next.answers.push({ status: 429, retryAfter: "30" });
    next.relay("track", "placed-order");
    await wait(FLUSH_MS);
    expect(next.sent).toHaveLength(1);
    await wait(25_000);
    expect(next.sent).toHaveLength(1);
    await wait(10_000);
    expect(next.sent).toHaveLength(2);
    expect(next.sent[1]?.body.activities.map((a) => a.activity_id)).toEqual(["act:cm:logged-in", "act:cm:placed-order"]);
  });

  it("waits out a Retry-After within the page whatever the device's clock does meanwhile (the page's clock is monotonic)", async () => {
    const page = openPage();
    page.relay("identify", { email: "chris@example.com" });
    page.answers.push({ status: 503, retryAfter: "60" });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    // The device's clock steps back an hour: the pause still ends 60 s after it began.
    vi.setSystemTime(Date.now() - 3_600_000);
    await wait(62_000 + 2_000);
    expect(page.sent.length).toBeGreaterThanOrEqual(2);
    expect(page.storage.state()?.q).toEqual([]);
  });

  it("does not take a live tab for dead when the device's clock steps forward an hour before another page opens", async () => {
    const storage = new MemoryStorage();
    const live = openPage({ storage });
    live.relay("track", "viewed-page");
    await wait(FLUSH_MS);
    vi.setSystemTime(Date.now() + 3_600_000);
    const other = openPage({ storage });
    await settle();
    // The live tab's event is still its own (no second copy to send).
    expect(storage.tabs().map((t) => t.q.length)).toEqual([1]);
    other.relay("identify", { email: "chris@example.com" });
    await wait(FLUSH_MS * 2);
    expect(other.sent).toHaveLength(0);
    expect(live.activities().map((a) => a.activity_id)).toEqual(["act:cm:viewed-page"]);
  });
});

describe("page views of a single-page app", () => {
  it("records none for a replaceState that changes only the query (UTM stripping, search as you type)", async () => {
    const page = openPage({ url: "https://shop.example/?utm_source=news", pageviews: "act:cm:viewed-page" });
    page.relay("identify", { email: "chris@example.com" });
    await Promise.resolve();
    page.w.history.replaceState({}, "", "/");
    await wait(600);
    for (const q of ["s", "sh", "sho", "shoe", "shoes"]) {
      page.w.history.replaceState({}, "", `/search?q=${q}`);
      await wait(400);
    }
    await settle();
    expect(page.activities().map((a) => a.attributes?.["str:cm:page-url"])).toEqual([
      "https://shop.example/?utm_source=news",
      "https://shop.example/search?q=s",
    ]);
  });
});
