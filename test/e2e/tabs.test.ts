/// <reference types="node" />
/**
 * One visitor, several tabs (Playwright pages of one context share localStorage, like a
 * browser's tabs): each tab keeps its own queue, so no event is lost or sent twice and no page
 * is blocked, whichever tab sends, closes, navigates or goes offline.
 */
import type { BrowserContext, Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import {
  activitiesOf,
  clockShift,
  emailFor,
  moveClock,
  newVisitor,
  pageUrl,
  settled,
  sleep,
  snippetLoaded,
  startProxy,
  stored,
  until,
  useBrowser,
  watch,
} from "./helpers.ts";

const browser = useBrowser({ backForwardCache: true, concurrent: true });

/** Opens `count` tabs of the fixture page with these data attributes, the snippet loaded in each. */
async function tabs(context: BrowserContext, count: number, query: Record<string, string> = {}): Promise<Page[]> {
  const pages: Page[] = [];
  for (let n = 0; n < count; n++) {
    const page = await context.newPage();
    await page.goto(pageUrl("tag", query));
    await snippetLoaded(page);
    pages.push(page);
  }
  return pages;
}

// Each test is a visitor of its own (its own context, email and proxy) waiting on its own windows:
// they run at once, but for the main-thread timing, which runs alone.
describe.concurrent("several tabs share the queue", () => {
  it("delivers 80 of 80, exactly once each, when two tabs each track 40 events at the same moment", async () => {
    const context = await newVisitor(browser());
    const [a, b] = (await tabs(context, 2)) as [Page, Page];
    const email = emailFor("burst");
    await a.evaluate((email) => relay("identify", { email }), email);
    // Both tabs at once (the contact limit is 50 per activity a day: one activity per tab).
    const burst = (activity: string) => {
      for (let n = 0; n < 40; n++) relay("track", activity, { "int::v": n });
    };
    await Promise.all([a.evaluate(burst, "logged-in"), b.evaluate(burst, "placed-order")]);

    const arrived = await activitiesOf(email, 80, 30_000);
    expect(new Set(arrived.map((x) => x.key)).size).toBe(80);
    const { mine, duplicates } = await settled(email);
    expect(mine).toHaveLength(80);
    expect(duplicates).toBe(0);
    await context.close();
  });

  it("keeps another tab's events and identity when a new tab calls consent(true) while it tracks", async () => {
    const context = await newVisitor(browser());
    const email = emailFor("consent-tabs");
    const query = { "data-consent": "required" };
    const [a] = (await tabs(context, 1, query)) as [Page];
    await a.evaluate(() => relay("consent", true));
    // A second tab loads (consent remembered); its consent platform calls consent(true) again a
    // moment later, while the first tab identifies the visitor and tracks.
    const [b] = (await tabs(context, 1, query)) as [Page];
    const tracking = a.evaluate(async (email) => {
      relay("identify", { email });
      for (let n = 0; n < 5; n++) {
        relay("track", "logged-in", { "int::v": n });
        await new Promise((r) => setTimeout(r, 300));
      }
    }, email);
    await sleep(800);
    await b.evaluate(() => relay("consent", true));
    await tracking;

    await activitiesOf(email, 5);
    const { mine } = await settled(email);
    expect(mine.map((x) => x.attributes["int::v"]).sort()).toEqual([0, 1, 2, 3, 4]);
    // The identity is still the visitor's, for every tab and the next pages.
    expect((await stored(b))?.i).toEqual({ f: { email } });
    await context.close();
  });

  it("loses nothing of another tab's when one tab's storage write fails (a full quota)", async () => {
    const context = await newVisitor(browser());
    const [a, b] = (await tabs(context, 2)) as [Page, Page];
    const email = emailFor("quota");
    await a.evaluate((email) => relay("identify", { email }), email);
    // Tab A's next write fails, as with a full quota.
    await a.evaluate(() => {
      const setItem = Storage.prototype.setItem;
      let failures = 1;
      Storage.prototype.setItem = function (key: string, value: string) {
        if (failures-- > 0) throw new DOMException("The quota has been exceeded.", "QuotaExceededError");
        return setItem.call(this, key, value);
      };
    });
    await a.evaluate(() => relay("track", "placed-order", { "int::v": 100 }));
    await b.evaluate(() => {
      for (let n = 0; n < 5; n++) relay("track", "logged-in", { "int::v": n });
    });
    await a.evaluate(() => relay("track", "placed-order", { "int::v": 101 }));

    await activitiesOf(email, 7);
    const { mine, duplicates } = await settled(email);
    expect(mine.map((x) => x.attributes["int::v"]).sort((x, y) => Number(x) - Number(y))).toEqual([0, 1, 2, 3, 4, 100, 101]);
    expect(duplicates).toBe(0);
    expect((await stored(b))?.i).toEqual({ f: { email } });
    await context.close();
  });

  it('lets two tabs opened before consent (data-consent="required") learn it from a third, and send what they held', async ({ expect }) => {
    const context = await newVisitor(browser());
    const query = { "data-consent": "required" };
    const [a, b] = (await tabs(context, 2, query)) as [Page, Page];
    const seen = [watch(a), watch(b)];
    const email = emailFor("consent-later-tab");
    await a.evaluate((email) => {
      relay("identify", { email });
      relay("track", "logged-in", { "int::v": 1 });
      relay("track", "logged-in", { "int::v": 2 });
    }, email);
    // Tab B's visitor is the same, but B only knows it from tab A's memory: it holds its event anonymous.
    await b.evaluate(() => relay("track", "placed-order", { "int::v": 3 }));
    await sleep(1_500);
    expect(seen.flatMap((s) => s.sent)).toEqual([]);
    expect(await stored(a)).toBeNull();

    const [c] = (await tabs(context, 1, query)) as [Page];
    await c.evaluate(() => relay("consent", true));
    const arrived = await activitiesOf(email, 3);
    expect(arrived.map((x) => x.attributes["int::v"]).sort()).toEqual([1, 2, 3]);
    // Each tab sent its own (Playwright hears of a page's request over CDP, which a loaded machine
    // can deliver after the emulator has already recorded the activity: polled, not read once).
    await expect.poll(() => seen.every((s) => s.sent.length > 0)).toBe(true);
    await context.close();
  });

  it.sequential("takes under 50 ms of main thread for 100 calls on a full queue of held events, with another tab's queue full too", async () => {
    const context = await newVisitor(browser());
    const pages = await tabs(context, 2);
    // An anonymous visitor: events are held (100 per tab), and more keep coming.
    for (const page of pages)
      await page.evaluate(() => {
        for (let n = 0; n < 100; n++) relay("track", "viewed-page", { "str:cm:page-title": `page ${n}` });
      });
    await sleep(500);
    const [a] = pages as [Page];
    const runs = await a.evaluate(async () => {
      const times: number[] = [];
      for (let run = 0; run < 3; run++) {
        const start = performance.now();
        for (let n = 0; n < 100; n++) relay("track", "logged-in", { "int::v": n });
        // What is left for the end of the task counts too.
        await Promise.resolve();
        times.push(performance.now() - start);
        await new Promise((r) => setTimeout(r, 100));
      }
      return times;
    });
    // The best of three (the machine is shared): a guard against a return to O(queue) work per call,
    // which took 2,096 ms when every call re-read and re-wrote the queue. Each call writes its own
    // event (about 0.1 ms); `npm run bench:snippet` measures a call against its 0.5 ms target.
    expect(Math.min(...runs)).toBeLessThan(50);
    // Still bounded, the oldest dropped and counted (the count written with the heartbeat or when the page is hidden).
    await a.evaluate(() => {
      Object.defineProperty(document, "hidden", { value: true, configurable: true });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    const state = await stored(a);
    expect(state?.tabs.map((t) => t.q.length)).toEqual([100, 100]);
    expect(state?.d).toBe(300);
    await context.close();
  });

  it("keeps the lease of a batch in flight across a navigation: the next page does not send it again at once", async () => {
    const proxy = await startProxy();
    try {
      const context = await newVisitor(browser());
      const query = { "data-endpoint": proxy.url };
      const [a] = (await tabs(context, 2, query)) as [Page, Page];
      const email = emailFor("navigate-in-flight");
      // The relay takes 3 s to answer the first request.
      let first = true;
      proxy.rule = () => {
        if (!first) return undefined;
        first = false;
        return { delayMs: 3_000 };
      };
      await a.evaluate((email) => {
        relay("identify", { email });
        relay("track", "logged-in", { "str:cm:payment-plan": "in flight" });
      }, email);
      await until("the batch in flight", async () => proxy.requests.length === 1);
      const key = proxy.requests[0]?.body.activities?.[0]?.key;
      // The visitor moves on while the request is in flight.
      await a.goto(pageUrl("tag", query));
      await snippetLoaded(a);
      await sleep(3_000);
      expect(proxy.carrying(key)).toHaveLength(1);
      // No page heard the answer, so the event is still stored, leased: the next page sends it again
      // once the lease is over, and Ortto merges it (clock.test.ts sees such a re-send through).
      expect((await stored(a))?.q.map((i) => [i.a.key, i.l !== undefined])).toEqual([[key, true]]);
      // The request outlived its page (keepalive), and delivered it.
      const { mine } = await settled(email);
      expect(mine.map((x) => x.key)).toEqual([key]);
      await context.close();
    } finally {
      await proxy.close();
    }
  });

  it("never sends a batch beside its request still in flight, however long the relay takes to answer", async () => {
    const proxy = await startProxy();
    try {
      const context = await newVisitor(browser());
      // Leases and in-flight limits go by Date.now(): the pages' clocks are moved on 31 s below,
      // rather than the test waiting that long.
      await context.addInitScript(clockShift, 0);
      const [a, b] = (await tabs(context, 2, { "data-endpoint": proxy.url })) as [Page, Page];
      const email = emailFor("hanging");
      await a.evaluate((email) => relay("identify", { email }), email);
      // The relay hangs on tab A's first request.
      let first = true;
      proxy.rule = () => {
        if (!first) return undefined;
        first = false;
        return { delayMs: 8_000 };
      };
      await a.evaluate(() => relay("track", "logged-in", { "int::v": 1 }));
      await until("tab A's request", async () => proxy.requests.length === 1);
      const key = proxy.requests[0]?.body.activities?.[0]?.key;
      await b.evaluate(() => relay("track", "placed-order", { "int::v": 1 }));
      // 31 s later, for the pages, the request still unanswered: both tabs keep tracking.
      await moveClock(a, 31_000);
      await moveClock(b, 31_000);
      await a.evaluate(() => relay("track", "logged-in", { "int::v": 2 }));
      await b.evaluate(() => relay("track", "placed-order", { "int::v": 2 }));

      await activitiesOf(email, 4, 20_000);
      const { mine, duplicates } = await settled(email);
      expect(mine).toHaveLength(4);
      expect(duplicates).toBe(0);
      expect(proxy.carrying(key)).toHaveLength(1);
      await context.close();
    } finally {
      await proxy.close();
    }
  });

  it("counts a page restored from the back/forward cache as a page view", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const email = emailFor("bfcache");
    const shop = pageUrl("tag", { "data-pageviews": "act:cm:viewed-page", bfcache: "" });
    await page.goto(shop);
    await snippetLoaded(page);
    await page.evaluate((email) => relay("identify", { email }), email);
    await activitiesOf(email, 1);
    await page.evaluate(() => {
      (window as unknown as { marker: number }).marker = 42;
    });
    await page.goto(pageUrl("bye"));
    // A restore from the cache fires pageshow, not load.
    await page.goBack({ waitUntil: "commit" });
    // The same document, back from the cache (not loaded again).
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
    const views = await activitiesOf(email, 2);
    expect(views.map((v) => v.attributes["str:cm:page-url"])).toEqual([shop, shop]);
    await context.close();
  });
});
