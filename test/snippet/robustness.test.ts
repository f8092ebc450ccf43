import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createRelay, FLUSH_MS } from "../../snippet/src/core.ts";
import { MemoryStorage, openPage, settle, wait } from "./helpers.ts";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

const cyclic: Record<string, unknown> = {};
cyclic.self = cyclic;

/** Calls no page should make, and some a buggy page will. */
const garbage: unknown[][] = [
  [],
  [undefined],
  [null],
  [42],
  [{}],
  ["launch-missiles"],
  ["track"],
  ["track", ""],
  ["track", 42],
  ["track", { activity: "x" }],
  ["track", "logged-in", "not attributes"],
  ["track", "logged-in", ["a", "b"]],
  ["track", "logged-in", cyclic],
  ["track", "logged-in", { n: 10n }],
  ["identify"],
  ["identify", "chris@example.com"],
  ["identify", null],
  ["identify", ["str::email"]],
  ["identify", cyclic],
  ["identify", { email: "chris@example.com" }, { token: 42 }],
  ["identify", { email: "chris@example.com" }, "token"],
  ["consent"],
  ["consent", "yes"],
  ["consent", 1],
  ["reset", "extra", "arguments"],
  ["TRACK", "logged-in"],
];

describe("the page is never broken", () => {
  it("ignores every bad call without throwing, and warns about it only in debug mode", async () => {
    const quiet = openPage();
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    for (const args of garbage) expect(() => (quiet.relay as (...a: unknown[]) => void)(...args)).not.toThrow();
    expect(warn).not.toHaveBeenCalled();

    const loud = openPage({ debug: true });
    for (const args of garbage) (loud.relay as (...a: unknown[]) => void)(...args);
    // Every call but the reset (which is valid, extra arguments aside) is reported.
    expect(warn).toHaveBeenCalledTimes(garbage.length - 1);

    // None of it reached the queue or the wire, and the relay still works.
    await settle();
    expect(quiet.fetch).not.toHaveBeenCalled();
    expect(quiet.storage.state()?.q ?? []).toEqual([]);
    quiet.relay("identify", { email: "chris@example.com" });
    quiet.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(quiet.sent).toHaveLength(1);
  });

  it("copies attributes at the call, so later changes by the page do not reach the event", async () => {
    const page = openPage();
    page.relay("identify", { email: "chris@example.com" });
    const attributes = { "str:cm:payment-plan": "starter" };
    page.relay("track", "logged-in", attributes);
    attributes["str:cm:payment-plan"] = "changed";
    await wait(FLUSH_MS);
    expect(page.activities()[0]?.attributes).toEqual({ "str:cm:payment-plan": "starter" });
  });

  it("survives storage that throws on every call", async () => {
    const storage = Object.assign(new MemoryStorage(), { broken: true });
    const page = openPage({ storage, pageviews: "act:cm:viewed-page" });
    expect(() => page.relay("identify", { email: "chris@example.com" })).not.toThrow();
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
  });

  it("survives a localStorage getter that throws (storage disabled by the browser)", async () => {
    const page = openPage({
      beforeStart: (w) => {
        Object.defineProperty(w, "localStorage", {
          get() {
            throw new DOMException("denied", "SecurityError");
          },
          configurable: true,
        });
      },
    });
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
  });

  it("survives fetch and sendBeacon that throw or are missing", async () => {
    const page = openPage();
    page.fetch.mockImplementation(() => {
      throw new Error("blocked by an extension");
    });
    page.beacon.mockImplementation(() => {
      throw new Error("blocked by an extension");
    });
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(() => page.hide()).not.toThrow();
    expect(page.storage.state()?.q).toHaveLength(1);
  });

  it("gives every event a key of its own, in every tab, even when the page has seeded Math.random", async () => {
    const storage = new MemoryStorage();
    // A seeded generator (as seedrandom leaves it): the same sequence in every page.
    const seeded = () => {
      let s = 42;
      return () => {
        s = (s * 16807) % 2147483647;
        return (s - 1) / 2147483646;
      };
    };
    const pages = [0, 1].map(() => {
      vi.spyOn(Math, "random").mockImplementation(seeded());
      return openPage({ storage });
    });
    for (const page of pages) {
      page.relay("identify", { email: "chris@example.com" });
      for (let n = 0; n < 5; n++) page.relay("track", "logged-in");
    }
    // Each tab's heartbeat under a key of its own, and each event too.
    await vi.advanceTimersByTimeAsync(1);
    expect(storage.tabs()).toHaveLength(2);
    expect(storage.events()).toHaveLength(10);
    await settle();
    const keys = pages.flatMap((page) => page.activities().map((a) => a.key));
    expect(keys).toHaveLength(10);
    expect(new Set(keys).size).toBe(10);
    expect(keys[0]).toMatch(/^relay:[0-9a-f-]{36}\|\d{10}$/);
  });

  it("gives every event a key of its own without crypto.randomUUID (an http page): Math.random's digits and a count", async () => {
    vi.stubGlobal("crypto", {});
    try {
      const page = openPage();
      page.relay("identify", { email: "chris@example.com" });
      for (let n = 0; n < 100; n++) page.relay("track", "logged-in");
      await settle();
      const keys = page.activities().map((a) => a.key);
      expect(keys[0]).toMatch(/^relay:0\.\d{10,}\|\d{10}$/);
      expect(new Set(keys).size).toBe(100);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it("returns a relay that does nothing when it cannot start (no window, as in SSR)", () => {
    const relay = createRelay({ endpoint: "https://relay.example", window: undefined as unknown as Window });
    vi.stubGlobal("window", undefined);
    try {
      const ssr = createRelay({ endpoint: "https://relay.example" });
      expect(() => ssr("track", "logged-in")).not.toThrow();
    } finally {
      vi.unstubAllGlobals();
    }
    expect(() => relay("track", "logged-in")).not.toThrow();
  });

  it("a refused batch never throws into the page", async () => {
    const errors: unknown[] = [];
    const page = openPage();
    page.w.addEventListener("error", (e) => errors.push(e));
    page.w.addEventListener("unhandledrejection", (e) => errors.push(e));
    page.answers.push(400, 400);
    page.relay("identify", { email: "chris@example.com" });
    page.relay("track", "logged-in");
    await settle();
    expect(errors).toEqual([]);
    expect(page.storage.state()?.q).toEqual([]);
  });
});
