/// <reference types="node" />
/**
 * The right person in Chromium: a page restored from the back/forward cache after a logout on
 * another page, and a login page whose inline calls the loader queued. Each waits for what the
 * emulator stored, never for a time.
 */
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { activitiesOf, emailFor, newVisitor, pageUrl, snippetLoaded, useBrowser } from "./helpers.ts";

const browser = useBrowser({ backForwardCache: true });

/** Opens the fixture page with the snippet's data attributes, loaded. */
async function open(page: Page, query: Record<string, string> = {}) {
  await page.goto(pageUrl("tag", query));
  await snippetLoaded(page);
}

describe("the right person, in a real browser", () => {
  it("credits a page view restored from the back/forward cache to the person identified now", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const [x, y] = [emailFor("bf-x"), emailFor("bf-y")];
    const shop = { "data-pageviews": "act:cm:viewed-page", bfcache: "" };
    await open(page, shop);
    await page.evaluate((x) => relay("identify", { email: x }), x);
    await activitiesOf(x, 1);
    await page.evaluate(() => {
      (window as unknown as { marker: number }).marker = 42;
    });
    // Another page of the site: log-out, and another person logs in.
    await open(page, { ...shop, other: "1" });
    // (This page's own view, at its start, was X's: X was logged in then.)
    await page.evaluate((y) => {
      relay("reset");
      relay("identify", { email: y });
      relay("track", "logged-in");
    }, y);
    await activitiesOf(y, 1);
    await page.goBack({ waitUntil: "commit" });
    // Restored from the back/forward cache, not loaded again.
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
    // The restored page's view goes to Y, and X has only the two views from before the log-out.
    const ys = await activitiesOf(y, 2);
    expect(ys.map((a) => a.activity_id).sort()).toEqual(["act:cm:logged-in", "act:cm:viewed-page"]);
    expect(await activitiesOf(x, 2)).toHaveLength(2);
    await context.close();
  });
});
