/// <reference types="node" />
/**
 * Exit events in Chromium: leaving with a batch in flight, after a transient failure (within the
 * backoff), and the site's own page-hide handlers tracking an event. The page left to (`bye`) has
 * no snippet: whatever arrives was sent by the page that was left. Each waits for what the
 * emulator stored or the proxy received, never for a time.
 */
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { activitiesOf, emailFor, newVisitor, pageUrl, snippetLoaded, startProxy, until, useBrowser } from "./helpers.ts";

const browser = useBrowser();

/** Opens the fixture page with the snippet's data attributes, loaded. */
async function open(page: Page, query: Record<string, string> = {}) {
  await page.goto(pageUrl("tag", query));
  await snippetLoaded(page);
}

describe("exit events, in a real browser", () => {
  it("delivers at page hide every event, 16 of 16, with a batch in flight and 15 tracked just before leaving", async () => {
    const proxy = await startProxy();
    try {
      const context = await newVisitor(browser());
      const page = await context.newPage();
      const email = emailFor("exit-15");
      let first = true;
      // The first request is held 2 s by the proxy: in flight when the visitor leaves.
      proxy.rule = () => {
        if (!first) return undefined;
        first = false;
        return { delayMs: 2_000 };
      };
      await open(page, { "data-endpoint": proxy.url });
      await page.evaluate((email) => {
        relay("identify", { email });
        relay("track", "logged-in", { "int::v": 100 });
      }, email);
      await until("the batch in flight", async () => proxy.requests.length === 1);
      await page.evaluate(
        ({ bye }) => {
          for (let n = 0; n < 15; n++) relay("track", "placed-order", { "int:cm:item-count": n });
          location.href = bye;
        },
        { bye: pageUrl("bye") },
      );
      const got = await activitiesOf(email, 16);
      expect(new Set(got.map((a) => a.key)).size).toBe(16);
      await context.close();
    } finally {
      await proxy.close();
    }
  });

  it("delivers the exit events a site tracks in its own pagehide and visibilitychange handlers", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const email = emailFor("exit-handlers");
    await open(page);
    await page.evaluate((email) => {
      relay("identify", { email });
      addEventListener("pagehide", () => relay("track", "logged-in", { "int::v": 1 }));
      document.addEventListener("visibilitychange", () => relay("track", "logged-in", { "int::v": 2 }));
    }, email);
    // A new tab of the site's, then this one closed: the page is hidden (visibilitychange) and goes (pagehide).
    await page.close({ runBeforeUnload: true });
    const got = await activitiesOf(email, 2);
    expect(got.map((a) => a.attributes["int::v"]).sort()).toEqual([1, 2]);
    await context.close();
  });

  it("delivers at page hide after a transient failure, leaving within the backoff", async () => {
    const proxy = await startProxy();
    try {
      const context = await newVisitor(browser());
      const page = await context.newPage();
      const email = emailFor("exit-after-failure");
      let first = true;
      proxy.rule = () => {
        if (!first) return undefined;
        first = false;
        return { status: 503 };
      };
      await open(page, { "data-endpoint": proxy.url });
      await page.evaluate((email) => {
        relay("identify", { email });
        relay("track", "logged-in");
      }, email);
      await until("the failed request", async () => proxy.requests.length === 1);
      await page.evaluate((bye) => {
        relay("track", "placed-order");
        location.href = bye;
      }, pageUrl("bye"));
      expect(await activitiesOf(email, 2)).toHaveLength(2);
      await context.close();
    } finally {
      await proxy.close();
    }
  });
});
