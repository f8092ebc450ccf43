/// <reference types="node" />
/**
 * Issue 9, parts 1 and 3, in a real browser: a device whose clock is wrong, and events whose
 * request at page hide was refused.
 */
import { describe, expect, it } from "vitest";
import {
  activitiesOf,
  clockShift,
  emailFor,
  logIn,
  newVisitor,
  pageUrl,
  settled,
  snippetLoaded,
  startProxy,
  useBrowser,
  watch,
} from "./helpers.ts";

// Each test is a visitor of its own (its own context, email and proxy) reading only its own
// activities: they run at once.
const browser = useBrowser({ concurrent: true });
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe.concurrent("a device whose clock is wrong", () => {
  it("delivers exactly once, with the relay's time, from a page whose clock is 2 h fast", async () => {
    const context = await newVisitor(browser());
    await context.addInitScript(clockShift, 2 * HOUR);
    const page = await context.newPage();
    const seen = watch(page);
    const email = emailFor("clock-fast");
    await page.goto(pageUrl("tag"));
    await snippetLoaded(page);
    expect((await page.evaluate(() => Date.now())) - Date.now()).toBeGreaterThan(2 * HOUR - 60_000);

    const before = Date.now();
    await logIn(page, email);
    const [first] = await activitiesOf(email, 1);
    // Right from the first request (the relay corrects created by the request's `t`): nothing refused, nothing sent twice.
    expect(seen.sent).toHaveLength(1);
    const created = Date.parse(first?.created as string);
    expect(created).toBeGreaterThanOrEqual(before - 2_000);
    expect(created).toBeLessThanOrEqual(Date.now());

    // Later events are stamped in the relay's time at once.
    const beforeSecond = Date.now();
    await page.evaluate(() => relay("track", "logged-in", { "int::v": 2 }));
    const both = await activitiesOf(email, 2);
    const second = Date.parse(both.find((a) => a.attributes["int::v"] === 2)?.created as string);
    expect(second).toBeGreaterThanOrEqual(beforeSecond - 2_000);
    expect(second).toBeLessThanOrEqual(Date.now());

    const { mine, duplicates } = await settled(email);
    expect(mine).toHaveLength(2);
    expect(duplicates).toBe(0);
    expect(seen.errors).toEqual([]);
    await context.close();
  });

  it("delivers exactly once from a page whose clock is 2 h slow, stamping events in the relay's time, the first one too", async () => {
    const context = await newVisitor(browser());
    await context.addInitScript(clockShift, -2 * HOUR);
    const page = await context.newPage();
    const email = emailFor("clock-slow");
    await page.goto(pageUrl("tag"));
    await snippetLoaded(page);

    const beforeFirst = Date.now();
    await logIn(page, email);
    const [first] = await activitiesOf(email, 1);
    expect(Date.parse(first?.created as string)).toBeGreaterThanOrEqual(beforeFirst - 2_000);
    expect(Date.parse(first?.created as string)).toBeLessThanOrEqual(Date.now());

    // And the next page of the origin, which has nothing stored about the clock.
    await page.reload();
    await snippetLoaded(page);
    const before = Date.now();
    await page.evaluate(() => relay("track", "logged-in", { "int::v": 2 }));
    const both = await activitiesOf(email, 2);
    const second = Date.parse(both.find((a) => a.attributes["int::v"] === 2)?.created as string);
    expect(second).toBeGreaterThanOrEqual(before - 2_000);
    expect(second).toBeLessThanOrEqual(Date.now());

    const { mine, duplicates } = await settled(email);
    expect(mine).toHaveLength(2);
    expect(duplicates).toBe(0);
    await context.close();
  });
});

describe.concurrent("the relay's clock, from the device's time at sending (`t`)", () => {
  /**
   * An offset of more than 2^31 ms (24.8 days) is kept whole: cut to 32 bits (`~~`), dates would be
   * wrong by multiples of 49.7 days, and a device over 74.6 days slow would see its events refused.
   */
  it("stamps events in the relay's time, the first one too, from a device whose clock is 40 days slow", async () => {
    const context = await newVisitor(browser());
    await context.addInitScript(clockShift, -40 * DAY);
    const page = await context.newPage();
    const email = emailFor("clock-40d");
    await page.goto(pageUrl("tag"));
    await snippetLoaded(page);
    const beforeFirst = Date.now();
    await logIn(page, email);
    const [first] = await activitiesOf(email, 1);
    expect((Date.parse(first?.created as string) - beforeFirst) / DAY).toBeCloseTo(0, 1);
    const before = Date.now();
    await page.evaluate(() => relay("track", "logged-in", { "int::v": 2 }));
    const both = await activitiesOf(email, 2);
    const second = Date.parse(both.find((a) => a.attributes["int::v"] === 2)?.created as string);
    await context.close();
    expect((second - before) / DAY).toBeCloseTo(0, 1);
  });

  /**
   * The relay corrects in 10 s steps: a device whose clock is right is never moved, so an event
   * tracked just after an answer is not stamped before those tracked earlier (with the `Date`
   * header's whole seconds it jittered between 0 and -999 ms with every answer).
   */
  it("stamps events tracked one after the other in order, before and after an answer", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const email = emailFor("clock-order");
    await page.goto(pageUrl("tag"));
    await snippetLoaded(page);
    await page.evaluate((email) => relay("identify", { email }), email);
    await page.evaluate(async () => {
      // Early in a second: the relay's Date header will say the second that began ~150 ms before.
      while (Date.now() % 1000 < 150 || Date.now() % 1000 > 250) await new Promise((r) => setTimeout(r, 5));
      // Ten events go at once (MAX_BATCH).
      for (let v = 0; v < 10; v++) relay("track", "logged-in", { "int::v": v });
      // The answer arrives and is heard (the events' keys removed), then the eleventh event.
      while (Object.keys(localStorage).some((k) => k.includes("|"))) await new Promise((r) => setTimeout(r, 2));
      relay("track", "logged-in", { "int::v": 10 });
    });
    const all = await activitiesOf(email, 11);
    await context.close();
    const at = (v: number) => Date.parse(all.find((a) => a.attributes["int::v"] === v)?.created as string);
    expect(at(10) - at(9)).toBeGreaterThanOrEqual(0);
  });
});

describe.concurrent("events sent at page hide", () => {
  it("delivers, on the next page load and exactly once, an event whose request at page hide was answered 429", async () => {
    const proxy = await startProxy();
    try {
      const context = await newVisitor(browser());
      const page = await context.newPage();
      const email = emailFor("hide-429");
      const shop = pageUrl("tag", { "data-endpoint": proxy.url });
      await page.goto(shop);
      await snippetLoaded(page);
      await page.evaluate((email) => relay("identify", { email }), email);
      // The relay is over its budget just as the visitor leaves: it answers the request made at page hide 429.
      let refusals = 0;
      proxy.rule = () => (refusals++ ? undefined : { status: 429, headers: { "Retry-After": "1" } });
      const next = pageUrl("tag", { "data-endpoint": proxy.url, page: "2" });
      await page.evaluate((next) => {
        relay("track", "placed-order", { "str:cm:order-number": "HIDE-429" });
        location.href = next;
      }, next);
      await page.waitForURL(next);
      await snippetLoaded(page);

      const [activity] = await activitiesOf(email, 1, 30_000);
      expect(activity?.attributes["str:cm:order-number"]).toBe("HIDE-429");
      expect(proxy.carrying(activity?.key)).toHaveLength(2);
      const { mine, duplicates } = await settled(email);
      expect(mine).toHaveLength(1);
      expect(duplicates).toBe(0);
      await context.close();
    } finally {
      await proxy.close();
    }
  });
});
