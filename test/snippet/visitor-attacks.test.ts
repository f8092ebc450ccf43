/**
 * An unlucky visitor: a relay that asked for a pause while the visitor moves quickly between
 * pages, and re-sends that must stay one activity in Ortto.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LEASE_MS } from "../../snippet/src/core.ts";
import { MemoryStorage, openPage, wait } from "./helpers.ts";

const NOW = Date.parse("2026-12-06T09:00:00.000Z");

beforeEach(() => {
  vi.useFakeTimers({ now: NOW });
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("a visitor against the relay's pause", () => {
  it.each([429, 503])(
    "sends nothing during a %s's Retry-After while the visitor goes through 20 pages a second apart, then every page view once",
    async (status) => {
      const storage = new MemoryStorage();
      const pages = [];
      const first = openPage({ storage, pageviews: "page-view" });
      first.relay("identify", { email: "chris@example.com" });
      first.answers.push({ status, retryAfter: "60" });
      await wait(1000);
      expect(first.sent).toHaveLength(1);
      pages.push(first);
      first.leave();
      await wait(0);
      for (let n = 1; n <= 20; n++) {
        const page = openPage({ storage, pageviews: "page-view", url: `https://shop.example/p${n}` });
        pages.push(page);
        await wait(1000);
        page.leave();
        // The next page starts in a task of its own.
        await wait(0);
      }
      // 21 s into a 60 s pause: the one request that was answered with the pause, and no other.
      const during = pages.reduce((n, p) => n + p.sent.length, 0);
      expect(during).toBe(1);
      // After the pause, the next page sends them all.
      await wait(60_000);
      const last = openPage({ storage, pageviews: "page-view", url: "https://shop.example/last" });
      await wait(LEASE_MS * 3);
      const keys = last.activities().map((a) => a.key);
      expect(new Set(keys).size).toBe(22);
    },
  );
});

describe("a visitor against a relay that is down", () => {
  // A 503 without Retry-After (the relay's own 503s carry one): page hide ignores the backoff, by
  // design (the page's last chance to send), so a visitor who leaves each page before the first
  // retry costs the relay at most the page's flush and its page hide. The backoff's random part is
  // pinned at 0, the shortest backoff (1 s), and each page lives 999 ms: the tightest case. (A page
  // living the full second would see the retry too when the draw lands in its lowest 1 ms.)
  it("sends at most two requests a page while the visitor goes through 20 pages, each left just before the shortest backoff, against a relay answering 503 without Retry-After", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0);
    const storage = new MemoryStorage();
    const pages = [];
    const first = openPage({ storage, pageviews: "page-view" });
    first.answers.push(...Array(50).fill(503));
    first.relay("identify", { email: "chris@example.com" });
    pages.push(first);
    await wait(1000);
    first.leave();
    await wait(0);
    for (let n = 1; n <= 20; n++) {
      const page = openPage({ storage, pageviews: "page-view", url: `https://shop.example/p${n}` });
      pages.push(page);
      page.answers.push(...Array(50).fill(503));
      await wait(999);
      page.leave();
      await wait(0);
    }
    const requests = pages.reduce((n, p) => n + p.sent.length, 0);
    expect(requests).toBeLessThanOrEqual(pages.length * 2);
  });
});

describe("a site's own exit events", () => {
  it("batches 20 events a site tracks in its own pagehide handler into at most 2 requests", async () => {
    const page = openPage();
    page.relay("identify", { email: "chris@example.com" });
    await wait(1000);
    const before = page.sent.length;
    page.w.addEventListener("pagehide", () => {
      for (let n = 0; n < 20; n++) page.relay("track", "placed-order", { "int:cm:item-count": n });
    });
    page.hide();
    await Promise.resolve();
    const exit = page.sent.slice(before);
    expect(exit.flatMap((s) => s.body.activities)).toHaveLength(20);
    expect(exit.length).toBeLessThanOrEqual(2);
  });
});
