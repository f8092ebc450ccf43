/// <reference types="node" />
/** Automatic page views in a real browser, on load and on a single-page app's navigation. */
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { activitiesOf, emailFor, emulator, newVisitor, pageUrl, sleep, snippetLoaded, stored, useBrowser, watch } from "./helpers.ts";

// Each test is a visitor of its own (its own context and email) and reads only its own activities:
// they run at once.
const browser = useBrowser({ concurrent: true });

/**
 * This visitor's activities in the order the page recorded them (`created`): not the order they
 * reached Ortto, as a batch the relay queues (its budget short, tests running at once) arrives
 * after those it sends at once.
 */
const mine = async (email: string) =>
  (await emulator()).activities
    .filter((a) => a.fields["str::email"] === email)
    .sort((a, b) => Date.parse(a.created) - Date.parse(b.created));

describe.concurrent("page views", () => {
  it('records act:cm:viewed-page with str:cm:page-url on load and on history.pushState, with data-pageviews="act:cm:viewed-page"', async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const seen = watch(page);
    const email = emailFor("spa");
    const first = pageUrl("tag", { "data-pageviews": "act:cm:viewed-page" });
    const origin = new URL(first).origin;
    await page.goto(first);
    await snippetLoaded(page);
    // The load's page view waits (stored) for an identity: Ortto records activities only for people.
    await page.evaluate((email) => relay("identify", { email }), email);
    // A router's navigation: a new URL, then the title (the snippet records the URL once it has stayed for one look, 300 ms).
    await page.evaluate(() => {
      history.pushState({ page: 2 }, "", "/shop/chairs?colour=red");
      document.title = "Chairs";
    });
    // Not page views: a change of the hash alone, a replaceState that keeps the URL.
    await page.evaluate(() => {
      location.hash = "#reviews";
      history.replaceState({ page: 2 }, "", location.href);
    });

    const views = await activitiesOf(email, 2);
    expect(views.map((v) => v.activity_id)).toEqual(["act:cm:viewed-page", "act:cm:viewed-page"]);
    const byUrl = Object.fromEntries(views.map((v) => [v.attributes["str:cm:page-url"], v.attributes]));
    expect(byUrl[first]).toEqual({ "str:cm:page-url": first, "str:cm:page-title": "Fixture shop", "str:cm:referrer": "" });
    expect(byUrl[`${origin}/shop/chairs?colour=red`]).toEqual({
      "str:cm:page-url": `${origin}/shop/chairs?colour=red`,
      "str:cm:page-title": "Chairs",
      "str:cm:referrer": first,
    });
    await sleep(1_500);
    expect(await mine(email)).toHaveLength(2);
    expect(seen.errors).toEqual([]);
    await context.close();
  });
});

describe.concurrent("page views with a long URL or referrer", () => {
  /**
   * The URL, the title and the referrer are cut to 2,000 characters in the page (the relay cuts
   * them to 255): whole, one over 20,000 characters would make its page view, and the next one's
   * (its referrer), too large to send at all.
   */
  it("records the page views of a SPA route with a 25,000-character URL and of the route after it", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const email = emailFor("long-url");
    await page.goto(pageUrl("tag", { "data-pageviews": "act:cm:viewed-page", "data-debug": "" }));
    await snippetLoaded(page);
    await page.evaluate((email) => relay("identify", { email }), email);
    await activitiesOf(email, 1);
    // Each route stays until its page view has arrived (or 4 s), then the next one.
    await page.evaluate(() => history.pushState(null, "", `/search?state=${"s".repeat(25_000)}`));
    await activitiesOf(email, 2, 4_000).catch(() => []);
    await page.evaluate(() => history.pushState(null, "", "/next-route"));
    await activitiesOf(email, 3, 4_000).catch(() => []);
    const views = await mine(email);
    const d = (await stored(page))?.d ?? 0;
    await context.close();
    expect({ views: views.length, d }).toEqual({ views: 3, d: 0 });
  });

  it("records the page view of a page whose referrer has 30,000 characters, its referrer cut to 255", async () => {
    const referrer = `https://search.example/?q=${"q".repeat(29_974)}`;
    const context = await newVisitor(browser());
    // Chromium strips a referrer over 4 kB to its origin; another browser may not.
    await context.addInitScript((referrer) => Object.defineProperty(document, "referrer", { value: referrer }), referrer);
    const page = await context.newPage();
    const email = emailFor("long-referrer");
    await page.goto(pageUrl("tag", { "data-pageviews": "act:cm:viewed-page", "data-debug": "" }));
    await snippetLoaded(page);
    expect(await page.evaluate(() => document.referrer.length)).toBe(30_000);
    await page.evaluate((email) => relay("identify", { email }), email);
    const [view] = await activitiesOf(email, 1);
    const d = (await stored(page))?.d ?? 0;
    await context.close();
    expect({ referrer: view?.attributes["str:cm:referrer"], d }).toEqual({ referrer: referrer.slice(0, 255), d: 0 });
  });
});

describe.concurrent("page views of a single-page app's routes (the Navigation API's currententrychange, or a look at the URL every 300 ms without it)", () => {
  /** A page with page views on (and `extra` attributes), its visitor identified, its load's page view arrived. */
  /** A query-only replaceState (UTM stripping), a pushState, a hash route and back, each route shown 400 ms. */
  const routesAndBack = (page: Page) =>
    page.evaluate(async () => {
      const shown = () => new Promise((r) => setTimeout(r, 400));
      history.replaceState(null, "", "?utm_source=mail");
      await shown();
      history.pushState(null, "", "/shop/chairs");
      await shown();
      location.hash = "#/cart";
      await shown();
      history.back();
    });

  async function spa(name: string, extra: Record<string, string> = {}, withoutNavigationApi = false, beforeStart?: () => void) {
    const context = await newVisitor(browser());
    // A browser without the Navigation API (Safari before 26.2, Firefox before 147).
    if (withoutNavigationApi) await context.addInitScript(() => Object.defineProperty(window, "navigation", { value: undefined }));
    if (beforeStart) await context.addInitScript(beforeStart);
    const page = await context.newPage();
    const email = emailFor(name);
    const first = pageUrl("tag", { "data-pageviews": "act:cm:viewed-page", ...extra });
    await page.goto(first);
    await snippetLoaded(page);
    await page.evaluate((email) => relay("identify", { email }), email);
    await activitiesOf(email, 1);
    const urls = async () =>
      (await mine(email)).map(
        (a) => new URL(a.attributes["str:cm:page-url"] as string).pathname + new URL(a.attributes["str:cm:page-url"] as string).hash,
      );
    return { context, page, email, urls };
  }

  it("records one page view on pushState to a new path and one on popstate (back), none on query-only replaceState (UTM stripping, search as you type)", async () => {
    const { context, page, email, urls } = await spa("history");
    await page.evaluate(async () => {
      // UTM stripping, then search as you type: the query alone changes.
      history.replaceState(null, "", `${location.pathname}?`);
      for (const q of ["c", "ch", "cha", "chai", "chair"]) {
        history.replaceState(null, "", `?q=${q}`);
        await new Promise((r) => setTimeout(r, 150));
      }
      history.pushState(null, "", "/shop/chairs");
      await new Promise((r) => setTimeout(r, 400));
      history.back();
    });
    await activitiesOf(email, 3);
    await sleep(1_000);
    expect(await urls()).toEqual(["/tag.html", "/shop/chairs", "/tag.html"]);
    await context.close();
  });

  it("records every route shown for 350 ms (20 of 20)", async () => {
    const { context, page, email, urls } = await spa("short-routes");
    await page.evaluate(async () => {
      for (let i = 0; i < 20; i++) {
        history.pushState(null, "", `/route/${i}`);
        await new Promise((r) => setTimeout(r, 350));
      }
    });
    // 21 page views in several batches, beside the file's other tests: up to 30 s on a loaded machine.
    await activitiesOf(email, 21, 30_000);
    expect((await urls()).slice(1)).toEqual(Array.from({ length: 20 }, (_, i) => `/route/${i}`));
    await context.close();
  });

  it("counts a change of the hash alone as no page view, and as one with data-hash (its URL with the hash)", async () => {
    const plain = await spa("hash-off");
    const hashed = await spa("hash-on", { "data-hash": "" });
    for (const { page } of [plain, hashed])
      await page.evaluate(async () => {
        location.hash = "#/cart";
        await new Promise((r) => setTimeout(r, 400));
        history.pushState(null, "", "#/checkout");
      });
    await activitiesOf(hashed.email, 3);
    await sleep(1_000);
    expect({ plain: await plain.urls(), hashed: await hashed.urls() }).toEqual({
      plain: ["/tag.html"],
      hashed: ["/tag.html", "/tag.html#/cart", "/tag.html#/checkout"],
    });
    await plain.context.close();
    await hashed.context.close();
  });

  it("with data-hash, a hash router's rewrite of the landing to its root route (#/) is no second page view, and its next route is one", async () => {
    // A hash router (Vue Router's createWebHashHistory, Angular's HashLocationStrategy) starts once
    // the page has loaded, after the snippet's page view of the landing, and rewrites its URL to /#/.
    const { context, page, email, urls } = await spa("hash-landing", { "data-hash": "" }, false, () =>
      addEventListener("load", () => history.replaceState(null, "", "#/")),
    );
    await sleep(700);
    expect(await page.evaluate(() => location.hash)).toBe("#/");
    await page.evaluate(() => history.pushState(null, "", "#/cart"));
    await activitiesOf(email, 2);
    await sleep(1_000);
    expect(await urls()).toEqual(["/tag.html", "/tag.html#/cart"]);
    await context.close();
  });

  it("with data-hash, counts a change of the hash route's query alone (#/a?x=1 to #/a?x=2) as no page view, and the next route as one", async () => {
    const { context, page, email, urls } = await spa("hash-route-query", { "data-hash": "" });
    await page.evaluate(async () => {
      const shown = () => new Promise((r) => setTimeout(r, 400));
      location.hash = "#/a?x=1";
      await shown();
      location.hash = "#/a?x=2";
      await shown();
      history.replaceState(null, "", "?q=1#/a?x=3");
      await shown();
      location.hash = "#/b?x=3";
    });
    await activitiesOf(email, 3);
    await sleep(1_000);
    expect(await urls()).toEqual(["/tag.html", "/tag.html#/a?x=1", "/tag.html#/b?x=3"]);
    await context.close();
  });

  it("with data-hash, records a query-only replaceState as none, then pushState, a hash route and back (popstate) to the path", async () => {
    const { context, page, email, urls } = await spa("hash-routes-back", { "data-hash": "" });
    await routesAndBack(page);
    await activitiesOf(email, 4);
    await sleep(1_000);
    expect(await urls()).toEqual(["/tag.html", "/shop/chairs", "/shop/chairs#/cart", "/shop/chairs"]);
    await context.close();
  });

  it("records the title a router sets 50 ms after pushState, and one page view for a route and its query-only replaceState", async () => {
    const { context, page, email } = await spa("late-title");
    await page.evaluate(async () => {
      history.pushState(null, "", "/shop/tables");
      await new Promise((r) => setTimeout(r, 50));
      document.title = "Tables";
      history.replaceState(null, "", "/shop/tables?sort=price");
    });
    await activitiesOf(email, 2);
    await sleep(1_000);
    const views = (await mine(email)).map((a) => [
      new URL(a.attributes["str:cm:page-url"] as string).pathname,
      a.attributes["str:cm:page-title"],
    ]);
    expect(views.slice(1)).toEqual([["/shop/tables", "Tables"]]);
    await context.close();
  });

  it("records the title a router sets 250 ms after pushState", async () => {
    const { context, page, email } = await spa("later-title");
    await page.evaluate(async () => {
      history.pushState(null, "", "/shop/tables");
      await new Promise((r) => setTimeout(r, 250));
      document.title = "Tables";
    });
    await activitiesOf(email, 2);
    await sleep(1_000);
    const titles = (await mine(email)).map((a) => a.attributes["str:cm:page-title"]);
    expect(titles.slice(1)).toEqual(["Tables"]);
    await context.close();
  });

  it("records a route whose navigation.intercept() commits its URL after a precommitHandler, before the next route", async () => {
    const { context, page, email, urls } = await spa("late-commit");
    await page.evaluate(async () => {
      const navigation = (window as unknown as { navigation: EventTarget & { navigate(url: string): { finished: Promise<unknown> } } })
        .navigation;
      // A router that loads the route's data before the URL changes (commit after 300 ms).
      const route = (e: Event) =>
        (e as Event & { intercept(options: object): void }).intercept({
          precommitHandler: () => new Promise((r) => setTimeout(r, 300)),
          handler: async () => {
            document.title = "Beds";
          },
        });
      navigation.addEventListener("navigate", route, { once: true });
      await navigation.navigate("/shop/beds").finished;
      await new Promise((r) => setTimeout(r, 1_000));
      history.pushState(null, "", "/shop/lamps");
    });
    await activitiesOf(email, 3);
    await sleep(1_000);
    expect(await urls()).toEqual(["/tag.html", "/shop/beds", "/shop/lamps"]);
    await context.close();
  });

  it("records no page view for a navigation the site cancels (navigate's preventDefault)", async () => {
    const { context, page, email, urls } = await spa("cancelled");
    await page.evaluate(async () => {
      const navigation = (window as unknown as { navigation: EventTarget }).navigation;
      navigation.addEventListener("navigate", (e) => e.preventDefault(), { once: true });
      history.pushState(null, "", "/shop/never");
      await new Promise((r) => setTimeout(r, 500));
      history.pushState(null, "", "/shop/next");
    });
    await activitiesOf(email, 2);
    await sleep(1_000);
    expect(await urls()).toEqual(["/tag.html", "/shop/next"]);
    await context.close();
  });

  it("without the Navigation API, records pushState, popstate and hash routes (data-hash) from a look at the URL every 300 ms", async () => {
    const { context, page, email, urls } = await spa("no-navigation-api", { "data-hash": "" }, true);
    expect(await page.evaluate(() => (window as { navigation?: unknown }).navigation)).toBeUndefined();
    await routesAndBack(page);
    await activitiesOf(email, 4);
    await sleep(1_000);
    expect(await urls()).toEqual(["/tag.html", "/shop/chairs", "/shop/chairs#/cart", "/shop/chairs"]);
    await context.close();
  });

  // A site's own global `navigation` (`var navigation = $(".navigation")` in a classic script)
  // replaces the Navigation API's: window.navigation is [Replaceable].
  for (const [what, replace] of [
    ["a menu's element", () => Object.assign(window, { navigation: document.createElement("nav") })],
    ["a jQuery-like object", () => Object.assign(window, { navigation: { length: 1, 0: "nav" } })],
  ] as const) {
    it(`records the start-up page view and pushState routes on a page whose global navigation is ${what}`, async () => {
      const { context, page, email, urls } = await spa(`own-navigation-${what.length}`, {}, false, replace);
      expect(await page.evaluate(() => "currentEntry" in (window as unknown as { navigation: object }).navigation)).toBe(false);
      await page.evaluate(() => history.pushState(null, "", "/shop/sofas"));
      await activitiesOf(email, 2);
      await sleep(1_000);
      expect(await urls()).toEqual(["/tag.html", "/shop/sofas"]);
      await context.close();
    });
  }

  it("runs no timer while the page is idle (after start-up, between heartbeats)", async () => {
    const context = await newVisitor(browser());
    // Counts every timer callback the page runs (the snippet's included), from before any script.
    await context.addInitScript(() => {
      const w = window as unknown as { wakes: number };
      w.wakes = 0;
      for (const name of ["setTimeout", "setInterval"] as const) {
        const original = window[name] as (f: unknown, ...rest: unknown[]) => number;
        (window as unknown as Record<string, unknown>)[name] = (f: unknown, ...rest: unknown[]) =>
          original(
            typeof f === "function"
              ? (...args: unknown[]) => {
                  w.wakes++;
                  return f(...args);
                }
              : f,
            ...rest,
          );
      }
    });
    const page = await context.newPage();
    const email = emailFor("idle");
    await page.goto(pageUrl("tag", { "data-pageviews": "act:cm:viewed-page" }));
    await snippetLoaded(page);
    await page.evaluate((email) => relay("identify", { email }), email);
    await activitiesOf(email, 1);
    await sleep(1_500);
    const before = await page.evaluate(() => (window as unknown as { wakes: number }).wakes);
    await sleep(5_000);
    const after = await page.evaluate(() => (window as unknown as { wakes: number }).wakes);
    expect(after - before).toBe(0);
    await context.close();
  });
});
