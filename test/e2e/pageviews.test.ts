/// <reference types="node" />
/** Automatic page views in a real browser, on load and on a single-page app's navigation. */
import { describe, expect, it } from "vitest";
import { activitiesOf, emailFor, emulator, newVisitor, pageUrl, sleep, snippetLoaded, stored, useBrowser, watch } from "./helpers.ts";

const browser = useBrowser();

const mine = async (email: string) => (await emulator()).activities.filter((a) => a.fields["str::email"] === email);

describe("page views", () => {
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
    expect((await emulator()).activities).toHaveLength(2);
    expect(seen.errors).toEqual([]);
    await context.close();
  });
});

describe("page views with a long URL", () => {
  /**
   * Page-view strings are cut to 2,000 characters in the page (the relay cuts them to 255): sent
   * whole, a URL over 20,000 characters made its page view, and the next one's (its referrer), too
   * large to send at all, and both were given up.
   */
  it("records the page views of a SPA route with a 25,000-character URL and of the route after it", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const email = emailFor("long-url");
    await page.goto(pageUrl("tag", { "data-pageviews": "act:cm:viewed-page", "data-debug": "" }));
    await snippetLoaded(page);
    await page.evaluate((email) => relay("identify", { email }), email);
    await activitiesOf(email, 1);
    await page.evaluate(() => history.pushState(null, "", `/search?state=${"s".repeat(25_000)}`));
    await sleep(900);
    await page.evaluate(() => history.pushState(null, "", "/next-route"));
    await sleep(900);
    await activitiesOf(email, 3, 4_000).catch(() => []);
    const views = await mine(email);
    const d = (await stored(page))?.d ?? 0;
    await context.close();
    expect({ views: views.length, d }).toEqual({ views: 3, d: 0 });
  });
});
