/// <reference types="node" />
/**
 * The right person in Chromium: a page restored from the back/forward cache after a logout on
 * another page, and logout and login pages whose inline calls the loader queued. Each waits for what the
 * emulator stored, never for a time.
 */
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import {
  activitiesOf,
  emailFor,
  emulator,
  newVisitor,
  pageUrl,
  settled,
  snippetLoaded,
  stored,
  until,
  useBrowser,
  watch,
} from "./helpers.ts";

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

  it("never credits a logout page's view (inline reset before load) to the person who logged out, and credits a login page's view (inline identify) to the one who logged in", async () => {
    const context = await newVisitor(browser());
    const [x, y] = [emailFor("logout-x"), emailFor("login-y")];
    const views = { "data-pageviews": "act:cm:viewed-page" };
    const page = await context.newPage();
    const seen = watch(page);
    await open(page, views);
    await page.evaluate((x) => relay("identify", { email: x }), x);
    await activitiesOf(x, 1);
    await page.goto(pageUrl("logout", views));
    await snippetLoaded(page);
    const login = pageUrl("login", { ...views, email: y });
    await page.goto(login);
    await snippetLoaded(page);
    // Y: the login page's view and logged-in (the logout page's anonymous view, held, goes to whoever identifies next: Y).
    const ys = await activitiesOf(y, 2);
    await until("the queue drained", async () => ((await stored(page))?.q.length ?? 0) === 0);
    const mine = async (email: string) => (await emulator()).activities.filter((a) => a.fields["str::email"] === email);
    const urlsOfY = (await mine(y)).filter((a) => a.activity_id === "act:cm:viewed-page").map((a) => a.attributes["str:cm:page-url"]);
    expect(urlsOfY).toContain(login);
    expect(ys.some((a) => a.activity_id === "act:cm:logged-in")).toBe(true);
    // X: only the first page's view.
    expect((await mine(x)).map((a) => a.attributes["str:cm:page-url"])).toEqual([pageUrl("tag", views)]);
    expect(seen.errors).toEqual([]);
    await context.close();
  });

  it("leaves a SPA for another page by a link and comes back from the back/forward cache with one page view, none at leaving", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const x = emailFor("bf-link");
    await open(page, { "data-pageviews": "act:cm:viewed-page", bfcache: "" });
    await page.evaluate((x) => relay("identify", { email: x }), x);
    await activitiesOf(x, 1);
    await page.evaluate(async () => {
      (window as unknown as { marker: number }).marker = 7;
      history.pushState(null, "", "/shop/desks");
      await new Promise((r) => setTimeout(r, 500));
      // A link to another document: the Navigation API sees it leave, and the page is frozen, not closed.
      const a = document.createElement("a");
      a.href = "/bye.html";
      document.body.append(a);
      a.click();
    });
    await page.waitForURL(/bye\.html/);
    await page.goBack({ waitUntil: "commit" });
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(7);
    // The load, the route, and the restore (a page view with the route's URL): no more.
    await activitiesOf(x, 3);
    const { mine } = await settled(x);
    expect(mine.map((a) => new URL(a.attributes["str:cm:page-url"] as string).pathname)).toEqual([
      "/tag.html",
      "/shop/desks",
      "/shop/desks",
    ]);
    await context.close();
  });
});
