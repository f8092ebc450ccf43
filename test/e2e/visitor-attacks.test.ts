/// <reference types="node" />
/**
 * An unlucky visitor in Chromium: re-sends (page hide, then the
 * next page's adoption; a request aborted after 15 s, then retried) must be one activity in Ortto,
 * so `key` and `created` must be the same in every send. Each waits for what the emulator stored
 * or the proxy received, never for a time.
 *
 * The tests spend their time in the snippet's own windows (a 10 s lease, a 15 s abort, a 30 s
 * Retry-After), so they run at once: each has its visitor, proxy and address, and looks only at
 * its own keys. The emulator is reset once, before the file's first test.
 */
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import {
  activitiesOf,
  emailFor,
  emulator,
  emulatorRequests,
  newVisitor,
  pageUrl,
  snippetLoaded,
  startProxy,
  stored,
  until,
  useBrowser,
} from "./helpers.ts";

const browser = useBrowser({ concurrent: true });

async function open(page: Page, query: Record<string, string> = {}) {
  await page.goto(pageUrl("tag", query));
  await snippetLoaded(page);
}

/** How many create requests the emulator (Ortto) received carrying the activity with this key. */
async function reaching(key: string | undefined) {
  return (await emulatorRequests()).filter((r) => r.body.activities?.some((a) => a.key === key)).length;
}

/** Every send of each key the proxy saw carries the same `created`. */
function sameCreated(requests: { body: { activities?: { key?: string; created?: unknown }[] } }[]) {
  const created = new Map<string, Set<unknown>>();
  for (const r of requests)
    for (const a of r.body.activities ?? []) created.set(a.key as string, (created.get(a.key as string) ?? new Set()).add(a.created));
  return [...created.values()].every((s) => s.size === 1);
}

describe.concurrent("a visitor's re-sends, in a real browser", () => {
  it("stores each exit event once when it is sent at page hide and again by the next page after its lease, with the same created", async () => {
    const proxy = await startProxy();
    try {
      const context = await newVisitor(browser());
      const page = await context.newPage();
      const email = emailFor("attack-hide-adopt");
      await open(page, { "data-endpoint": proxy.url });
      await page.evaluate((email) => {
        relay("identify", { email });
        for (let n = 0; n < 3; n++) relay("track", "placed-order", { "int:cm:item-count": n });
      }, email);
      // At once to another page of the site: page hide sends; the next page adopts the leased queue (its answer unheard).
      await open(page, { "data-endpoint": proxy.url, n: "2" });
      const keys = (await activitiesOf(email, 3)).map((a) => a.key);
      // The next page re-sends after the lease (10 s): wait for the re-send of every key, then for the emulator.
      await until("every key sent twice", async () => keys.every((k) => proxy.carrying(k).length >= 2), 45_000);
      expect(sameCreated(proxy.requests)).toBe(true);
      await until("the re-sends forwarded to Ortto", async () => (await Promise.all(keys.map(reaching))).every((n) => n >= 2), 45_000);
      const mine = (await emulator()).activities.filter((a) => a.fields["str::email"] === email);
      expect(mine.map((a) => a.key).sort()).toEqual([...keys].sort());
      expect(new Set(mine.map((a) => a.key)).size).toBe(3);
      await context.close();
    } finally {
      await proxy.close();
    }
  }, 90_000);

  it("stores an event once when its request, answered after 20 s, was aborted at 15 s and retried with the same created", async () => {
    const proxy = await startProxy();
    try {
      const context = await newVisitor(browser());
      const page = await context.newPage();
      const email = emailFor("attack-abort-retry");
      let first = true;
      proxy.rule = () => {
        if (!first) return undefined;
        first = false;
        return { delayMs: 20_000 };
      };
      await open(page, { "data-endpoint": proxy.url });
      await page.evaluate((email) => {
        relay("identify", { email });
        relay("track", "logged-in", { "int::v": 7 });
      }, email);
      const [stored] = await activitiesOf(email, 1, 60_000);
      // The slow first request is forwarded at 20 s, after the retry: both reach the relay.
      await until("the request sent twice", async () => proxy.carrying(stored?.key).length >= 2, 60_000);
      expect(sameCreated(proxy.requests)).toBe(true);
      await until("both forwarded to Ortto", async () => (await reaching(stored?.key)) >= 2, 60_000);
      const mine = (await emulator()).activities.filter((a) => a.fields["str::email"] === email);
      expect(mine).toHaveLength(1);
      await context.close();
    } finally {
      await proxy.close();
    }
  }, 120_000);

  it("sends nothing during the relay's 429 Retry-After while the visitor goes through 10 pages, then every page view once", async () => {
    const proxy = await startProxy();
    try {
      const context = await newVisitor(browser());
      const page = await context.newPage();
      const email = emailFor("attack-storm");
      let until429 = 0;
      // The first request is answered 429 with Retry-After 30; every request during those 30 s too.
      proxy.rule = (request) => {
        if (!until429) until429 = request.at + 30_000;
        return request.at < until429 ? { status: 429, headers: { "Retry-After": "30" } } : undefined;
      };
      const query = { "data-endpoint": proxy.url, "data-pageviews": "act:cm:viewed-page" };
      await open(page, query);
      await page.evaluate((email) => relay("identify", { email }), email);
      await until("the first request, answered 429", async () => proxy.requests.length === 1);
      // The page has heard the answer (the pause is stored): leaving before it would send the next
      // page's view, the pause not known yet on a loaded machine.
      await until("the pause stored", async () => ((await stored(page)) as { r?: number } | null)?.r !== undefined);
      // The visitor goes through 10 pages of the site, quickly (each page loaded, then the next).
      for (let n = 1; n <= 10; n++) await open(page, { ...query, n: String(n) });
      const during = proxy.requests.filter((r) => r.at < until429).length;
      expect(Date.now()).toBeLessThan(until429);
      expect(during).toBe(1);
      // After the pause, the last page sends the 11 page views, each stored once.
      const got = await activitiesOf(email, 11, 60_000);
      expect(new Set(got.map((a) => a.key)).size).toBe(got.length);
      await context.close();
    } finally {
      await proxy.close();
    }
  }, 120_000);

  it("delivers 20 events a site tracks in its own pagehide handler in at most 2 requests", async () => {
    const proxy = await startProxy();
    try {
      const context = await newVisitor(browser());
      const page = await context.newPage();
      const email = emailFor("attack-exit-burst");
      await open(page, { "data-endpoint": proxy.url });
      await page.evaluate((email) => {
        relay("identify", { email });
        addEventListener("pagehide", () => {
          for (let n = 0; n < 20; n++) relay("track", "placed-order", { "int:cm:item-count": n });
        });
      }, email);
      await page.goto(pageUrl("bye"));
      const got = await activitiesOf(email, 20, 30_000);
      expect(new Set(got.map((a) => a.key)).size).toBe(20);
      expect(proxy.requests.length).toBeLessThanOrEqual(2);
      await context.close();
    } finally {
      await proxy.close();
    }
  }, 90_000);
});
