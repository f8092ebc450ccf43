import type { Window } from "happy-dom";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { openPage, type PageOptions, settle, wait } from "./helpers.ts";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/**
 * The Navigation API as far as the snippet uses it (happy-dom has none; Chromium's is in
 * test/e2e/pageviews.test.ts): `navigation`, an EventTarget with a `currentEntry` that fires
 * `currententrychange` after each pushState and replaceState, as a browser does (once the URL has
 * changed), and on a traversal.
 */
function withNavigation(w: Window) {
  // Its currentEntry tells it from a site's own global `navigation` (test/e2e/pageviews.test.ts).
  const navigation = Object.assign(new w.EventTarget(), { currentEntry: {} });
  const fire = () => navigation.dispatchEvent(new w.Event("currententrychange"));
  for (const name of ["pushState", "replaceState"] as const) {
    const original = w.history[name];
    w.history[name] = (...args: [unknown, string, string?]) => {
      original.apply(w.history, args);
      fire();
    };
  }
  w.addEventListener("popstate", fire);
  Object.defineProperty(w, "navigation", { value: navigation, configurable: true });
}

/**
 * An identified page with page views on, once its script has run (the start-up page view comes at
 * the end of the script's task, after the loader's queued calls); returns the page views sent so
 * far, as [url, title, referrer].
 */
async function spa(url = "https://shop.example/", referrer = "https://search.example/?q=shoes", beforeStart?: PageOptions["beforeStart"]) {
  const page = openPage({ url, title: "Home", referrer, pageviews: "act:cm:viewed-page", beforeStart });
  page.relay("identify", { email: "chris@example.com" });
  await Promise.resolve();
  const views = async () => {
    await settle();
    return page
      .activities()
      .filter((a) => a.activity_id === "act:cm:viewed-page")
      .map((a) => [a.attributes?.["str:cm:page-url"], a.attributes?.["str:cm:page-title"], a.attributes?.["str:cm:referrer"]]);
  };
  return { page, views, history: page.w.history, doc: page.w.document };
}

describe('data-pageviews="act:cm:viewed-page"', () => {
  it("records a page view on start, with the catalogue's url, title and referrer attributes", async () => {
    const { views } = await spa();
    expect(await views()).toEqual([["https://shop.example/", "Home", "https://search.example/?q=shoes"]]);
  });

  it("records one on pushState, with the previous URL as referrer and the title the router sets after it", async () => {
    const { views, history, doc } = await spa();
    history.pushState({}, "", "/products/42?colour=red");
    // The router renders, then sets the title: a page view is recorded once its URL has stayed for one look (300 ms).
    await wait(250);
    doc.title = "Product 42";
    expect(await views()).toEqual([
      ["https://shop.example/", "Home", "https://search.example/?q=shoes"],
      ["https://shop.example/products/42?colour=red", "Product 42", "https://shop.example/"],
    ]);
  });

  it("records a route whose URL is very long (a SPA's state), and the route after it, cutting what it sends to 2,000 characters", async () => {
    const { page, views, history, doc } = await spa();
    const long = `/search?state=${"s".repeat(25_000)}`;
    doc.title = "t".repeat(25_000);
    history.pushState({}, "", long);
    await wait(700);
    history.pushState({}, "", "/next-route");
    await wait(700);
    // The relay cuts to Ortto's 255; the page sends at most 2,000 of each, never an event too large to send.
    expect((await views()).map((v) => v.map((x) => (x as string).length))).toEqual([
      [21, 4, 31],
      [255, 255, 21],
      [31, 255, 255],
    ]);
    const sent = page.sent.flatMap((s) => (JSON.parse(s.raw) as { a: { attributes: Record<string, string> }[] }).a);
    expect(sent.slice(1).map((a) => [a.attributes.u?.length, a.attributes.t?.length, a.attributes.r?.length])).toEqual([
      [2000, 2000, 21],
      [31, 2000, 2000],
    ]);
    expect(page.storage.state()?.d ?? 0).toBe(0);
  });

  it("sends a 5,000-character referrer cut to 2,000 characters, which the relay cuts to 255, and gives up no event for it", async () => {
    const referrer = `https://search.example/?q=${"q".repeat(4_974)}`;
    const { page, views } = await spa(undefined, referrer);
    const [[, , cut]] = (await views()) as [[string, string, string]];
    const sent = page.sent.flatMap((s) => (JSON.parse(s.raw) as { a: { attributes: Record<string, string> }[] }).a);
    expect({ sent: sent.map((a) => a.attributes.r?.length), cut: cut === referrer.slice(0, 255) }).toEqual({ sent: [2_000], cut: true });
    expect(page.storage.state()?.d ?? 0).toBe(0);
  });

  it("records one on replaceState to a new URL, none when only the state or the hash changes", async () => {
    const { views, history } = await spa();
    history.replaceState({ scroll: 10 }, "");
    history.pushState({}, "", "#reviews");
    history.replaceState({}, "", "/cart");
    expect((await views()).map((v) => v[0])).toEqual(["https://shop.example/", "https://shop.example/cart"]);
  });

  it("records one on popstate (back and forward)", async () => {
    const { views, history } = await spa();
    history.pushState({}, "", "/a");
    await settle();
    history.back();
    expect((await views()).map((v) => v[0])).toEqual(["https://shop.example/", "https://shop.example/a", "https://shop.example/"]);
  });

  it("leaves the page's history alone (nothing wrapped): it only looks at the URL", () => {
    const page = openPage({ pageviews: "act:cm:viewed-page" });
    const { pushState, replaceState } = page.w.History.prototype;
    expect(Object.hasOwn(page.w.history, "pushState")).toBe(false);
    expect(page.w.history.pushState).toBe(pushState);
    expect(page.w.history.replaceState).toBe(replaceState);
  });

  it("with the Navigation API, looks once 300 ms after currententrychange, with the title the router set meanwhile", async () => {
    const { views, history, doc } = await spa(undefined, undefined, withNavigation);
    history.pushState({}, "", "/products/42?colour=red");
    await wait(250);
    doc.title = "Product 42";
    await wait(60);
    // The query alone, then the hash alone: no page view.
    history.replaceState({}, "", "/products/42?colour=blue");
    history.pushState({}, "", "#reviews");
    expect(await views()).toEqual([
      ["https://shop.example/", "Home", "https://search.example/?q=shoes"],
      ["https://shop.example/products/42?colour=red", "Product 42", "https://shop.example/"],
    ]);
    history.back();
    history.back();
    history.back();
    expect((await views()).map((v) => v[0])).toEqual([
      "https://shop.example/",
      "https://shop.example/products/42?colour=red",
      "https://shop.example/",
    ]);
  });

  it("with the Navigation API, runs no timer while idle: none before a navigation, one after it", async () => {
    const { page, history } = await spa(undefined, undefined, withNavigation);
    await settle();
    vi.advanceTimersByTime(2_000);
    expect(vi.getTimerCount()).toBe(1); // the heartbeat's interval
    history.pushState({}, "", "/a");
    expect(vi.getTimerCount()).toBe(2);
    vi.advanceTimersByTime(300);
    expect(vi.getTimerCount()).toBe(2); // the page view's batch (1 s)
    await settle();
    expect(vi.getTimerCount()).toBe(1);
    expect(page.activities().map((a) => a.attributes?.["str:cm:page-url"])).toEqual(["https://shop.example/", "https://shop.example/a"]);
  });

  it("without the Navigation API, looks at the URL every 300 ms, a timer beside the heartbeat's", async () => {
    const { views, history } = await spa();
    await settle();
    expect(vi.getTimerCount()).toBe(2); // the heartbeat's interval and the path's
    history.pushState({}, "", "/a");
    vi.advanceTimersByTime(300);
    expect((await views()).map((v) => v[0])).toEqual(["https://shop.example/", "https://shop.example/a"]);
  });

  it("records a navigation made just before the page is hidden, before its next look at the URL", async () => {
    const { page, views, history } = await spa();
    await settle();
    history.pushState({}, "", "/checkout");
    page.hide();
    expect(page.sent.at(-1)?.body.activities.map((a) => a.attributes?.["str:cm:page-url"])).toEqual(["https://shop.example/checkout"]);
    expect((await views()).map((v) => v[0])).toEqual(["https://shop.example/", "https://shop.example/checkout"]);
  });

  it("cuts attributes to Ortto's 255 characters and leaves the hash out", async () => {
    const long = `https://shop.example/search?q=${"a".repeat(300)}#token=secret`;
    const { views } = await spa(long);
    const [[url]] = (await views()) as [[string]];
    expect(url).toHaveLength(255);
    expect(url).not.toContain("#");
  });

  it("sends a page view whose referrer is 30,000 characters long (a browser that does not cap it at 4 kB), cut to 2,000", async () => {
    const referrer = `https://search.example/?q=${"q".repeat(29_974)}`;
    const { page, views } = await spa(undefined, referrer);
    const count = (await views()).length;
    const sent = page.sent.flatMap((s) => (JSON.parse(s.raw) as { a: { attributes: Record<string, string> }[] }).a);
    expect({ views: count, r: sent.map((a) => a.attributes.r?.length), given_up: page.storage.state()?.d ?? 0 }).toEqual({
      views: 1,
      r: [2000],
      given_up: 0,
    });
  });

  it("with data-hash, records a hash route of a page whose query is longer than the 2,000 characters it sends", async () => {
    const page = openPage({
      url: `https://shop.example/app?state=${"s".repeat(3_000)}#/home`,
      pageviews: "act:cm:viewed-page",
      hash: true,
    });
    page.relay("identify", { email: "chris@example.com" });
    await settle();
    page.w.location.hash = "#/cart";
    await wait(700);
    page.w.location.hash = "#/cart?step=2";
    await wait(700);
    expect(page.activities().filter((a) => a.activity_id === "act:cm:viewed-page")).toHaveLength(2);
  });

  it.each(["/#/", "/#"])(
    "with data-hash, a hash router's rewrite of / to %s on landing is one page view, and its next route another",
    async (landing) => {
      const page = openPage({ url: "https://shop.example/", pageviews: "act:cm:viewed-page", hash: true, beforeStart: withNavigation });
      page.relay("identify", { email: "chris@example.com" });
      await Promise.resolve();
      // The router starts after the page view of the landing, and rewrites its URL to its root route.
      page.w.history.replaceState(null, "", landing);
      await wait(700);
      page.w.history.pushState(null, "", "/#/cart");
      await wait(700);
      await settle();
      const urls = page
        .activities()
        .filter((a) => a.activity_id === "act:cm:viewed-page")
        .map((a) => a.attributes?.["str:cm:page-url"]);
      expect(urls).toEqual(["https://shop.example/", "https://shop.example/#/cart"]);
    },
  );

  it("is off without the attribute", async () => {
    const page = openPage();
    page.relay("identify", { email: "chris@example.com" });
    page.w.history.pushState({}, "", "/a");
    await settle();
    expect(page.fetch).not.toHaveBeenCalled();
  });
});
