/// <reference types="node" />
/**
 * Adversarial review (issue 14's last changes: `kept`, reset in every tab, too large given up,
 * created in ms, page views by polling, Math.random keys), from an unlucky visitor's or a quirky
 * page's side. Each test states what README / snippet/README.md promises and fails while the
 * promise is broken.
 */
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import {
  activitiesOf,
  clockShift,
  emailFor,
  emulator,
  moveClock,
  newVisitor,
  pageUrl,
  sleep,
  snippetLoaded,
  stored,
  useBrowser,
} from "./helpers.ts";

const browser = useBrowser({ backForwardCache: true });
const DAY = 24 * 60 * 60 * 1000;

const mine = async (email: string) => (await emulator()).activities.filter((a) => a.fields["str::email"] === email);

/** Leaves `page` for another page of the site that runs `call` (a relay() call), then comes back from the back/forward cache. */
async function elsewhereThenBack(page: Page, call: () => void) {
  await page.evaluate(() => {
    (window as unknown as { marker: number }).marker = 42;
  });
  await page.goto(pageUrl("tag", { bfcache: "", other: "1" }));
  await snippetLoaded(page);
  await page.evaluate(call);
  await sleep(200);
  await page.goBack({ waitUntil: "commit" });
  await snippetLoaded(page);
  // The same document, restored from the cache (so it missed what happened meanwhile).
  expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
}

describe("review 2: the back/forward cache and what changed meanwhile in another page", () => {
  /**
   * HELD (kept as a guard): snippet/README.md "consent(false) ... forgets the identity and every
   * unsent event, of every tab"; "an opt-out that lasts across pages". Suspected: a page in the
   * back/forward cache misses the storage event and `pageshow` does not re-read the shared state, and
   * `flush` checks `allowed()` only before its `read()`. In Chromium 150 the restored page does learn
   * of the opt-out (nothing is sent or stored), so this stays a guard; the code path is still fragile
   * (re-check `allowed()` after `read()` in `flush` would make it robust).
   */
  it("sends nothing, and stores nothing, from a page restored after the visitor opted out in another page", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const email = emailFor("bf-optout");
    await page.goto(pageUrl("tag", { bfcache: "" }));
    await snippetLoaded(page);
    await page.evaluate((email) => {
      relay("identify", { email });
      relay("track", "logged-in", { "int::v": 1 });
    }, email);
    await activitiesOf(email, 1);
    await sleep(300);
    await elsewhereThenBack(page, () => relay("consent", false));
    await page.evaluate(() => relay("track", "logged-in", { "int::v": 2 }));
    await sleep(100);
    const queued = (await stored(page))?.q.length ?? 0;
    await sleep(2_500);
    const sent = await mine(email);
    await context.close();
    expect({ sent: sent.map((a) => a.attributes["int::v"]), stored: queued }).toEqual({ sent: [1], stored: 0 });
  });

  /**
   * HELD (kept as a guard): snippet/README.md "`reset()`: forgets the identity (call it on log-out)
   * ... in every tab of the site". A page restored from the back/forward cache after a log-out
   * elsewhere does not record the next event for the person who logged out.
   */
  it("does not record for the logged-out person an event tracked in a page restored after reset() elsewhere", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const email = emailFor("bf-reset");
    await page.goto(pageUrl("tag", { bfcache: "" }));
    await snippetLoaded(page);
    await page.evaluate((email) => {
      relay("identify", { email });
      relay("track", "logged-in", { "int::v": 1 });
    }, email);
    await activitiesOf(email, 1);
    await sleep(300);
    await elsewhereThenBack(page, () => relay("reset"));
    // Someone else, now anonymous, goes on in the restored page.
    await page.evaluate(() => relay("track", "logged-in", { "int::v": 2 }));
    await sleep(2_500);
    const sent = await mine(email);
    await context.close();
    expect(sent.map((a) => a.attributes["int::v"])).toEqual([1]);
  });
});

describe("review 2: created in ms and the relay's clock", () => {
  /**
   * FINDING (medium): `created: t + ~~(mem.o)`: `~~` truncates the clock offset to int32, so a device
   * clock more than 2^31 ms (24.8 days) slow gets an offset wrapped by a multiple of 2^32 ms (49.7
   * days). 40 days slow: every event after the relay's first answer is stamped ~49.7 days in the past
   * (accepted, silently wrong). More than ~74.6 days slow: ~99 days in the past, refused for good
   * ("more than 90 days ago") and dropped, every event, forever. Fix: `+(mem.o || 0)` or `mem.o | 0` → `Math.round`.
   */
  it("stamps events in the relay's time once it has answered, from a device whose clock is 40 days slow", async () => {
    const context = await newVisitor(browser());
    await context.addInitScript(clockShift, -40 * DAY);
    const page = await context.newPage();
    const email = emailFor("clock-40d");
    await page.goto(pageUrl("tag"));
    await snippetLoaded(page);
    await page.evaluate((email) => {
      relay("identify", { email });
      relay("track", "logged-in", { "int::v": 1 });
    }, email);
    await activitiesOf(email, 1);
    // The answer taught the offset (40 days).
    await sleep(300);
    const offset = (await stored(page))?.o ?? 0;
    expect(Math.abs(offset - 40 * DAY)).toBeLessThan(60_000);
    const before = Date.now();
    await page.evaluate(() => relay("track", "logged-in", { "int::v": 2 }));
    const both = await activitiesOf(email, 2);
    const second = Date.parse(both.find((a) => a.attributes["int::v"] === 2)?.created as string);
    await context.close();
    expect((second - before) / DAY).toBeCloseTo(0, 1);
  });

  /**
   * FINDING (low): the offset is learnt from the `Date` header, which has a resolution of one second
   * (always rounded down), and every answer rewrites it. With a correct device clock, `o` is a random
   * 0..-999 ms, so an event tracked just after an answer is stamped up to a second *before* events
   * tracked earlier: Ortto's timeline shows them out of order. Fix: ignore an offset under ~1 s
   * (or keep the smallest correction, or add 500 ms).
   */
  it("stamps events tracked one after the other in order (the Date header's one-second resolution)", async () => {
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
      // The answer arrives and is heard (the offset stored), then the eleventh event.
      while (JSON.parse(localStorage.getItem("relay") ?? "{}").o === undefined) await new Promise((r) => setTimeout(r, 2));
      relay("track", "logged-in", { "int::v": 10 });
    });
    const all = await activitiesOf(email, 11);
    await context.close();
    const at = (v: number) => Date.parse(all.find((a) => a.attributes["int::v"] === v)?.created as string);
    expect(at(10) - at(9)).toBeGreaterThanOrEqual(0);
  });
});

describe("review 2: keys from Math.random", () => {
  /**
   * FINDING (medium): both the tab's storage key (`relay:${Math.random()}`) and, since this change,
   * every event's key come from the page's `Math.random`, which a page may have replaced by a seeded
   * generator (seedrandom's global mode, a game, a deterministic A/B bucketer; the snippet loads
   * async, after the page's scripts). Every tab then has the same `own` key (tabs overwrite each
   * other's queue: "no other live page writes") and the same event keys: when one tab empties its
   * queue and removes the key, the other's storage handler drops its own events whose key appears in
   * `oldValue`. Here one of the two events (A's, in Chromium 150) is lost, uncounted.
   * (Before, event keys came from crypto.randomUUID where available.) Fix: crypto.getRandomValues
   * (or randomUUID) for both, captured at load; or Math.random captured before the page can change it is not possible (async).
   */
  it("delivers every tab's events on a site whose page seeds Math.random", async () => {
    const context = await newVisitor(browser());
    await context.addInitScript(() => {
      // A seeded generator (mulberry32), the same sequence in every page, as seedrandom leaves it.
      let s = 42;
      Math.random = () => {
        s = (s + 0x6d2b79f5) | 0;
        let t = Math.imul(s ^ (s >>> 15), 1 | s);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
    });
    const email = emailFor("seeded-random");
    const a = await context.newPage();
    await a.goto(pageUrl("tag"));
    await snippetLoaded(a);
    const b = await context.newPage();
    await b.goto(pageUrl("tag"));
    await snippetLoaded(b);
    // B's event is held (nobody identified yet); then A identifies the visitor and tracks.
    await b.evaluate(() => relay("track", "logged-in", { "str:cm:payment-plan": "from b" }));
    await sleep(100);
    await a.evaluate((email) => {
      relay("identify", { email });
      relay("track", "logged-in", { "str:cm:payment-plan": "from a" });
    }, email);
    await activitiesOf(email, 2, 6_000).catch(() => []);
    await sleep(1_500);
    const plans = (await mine(email)).map((x) => x.attributes["str:cm:payment-plan"]).sort();
    const d = (await stored(a))?.d ?? 0;
    await context.close();
    expect({ plans, d }).toEqual({ plans: ["from a", "from b"], d: 0 });
  });
});

describe("review 2: page views with a long URL", () => {
  /**
   * FINDING (low–medium, regression): page-view attributes now travel whole, to be cut to 255 by the
   * relay; but `take` gives up any event whose JSON exceeds 20,000 characters (×3 > MAX_BATCH_BYTES).
   * A SPA route whose URL carries a long state (> 20,000 characters; Chromium allows 2 MB) loses its
   * page view, and so does the next route's (its `referrer` is that URL), though the relay would
   * have accepted both after its cut (and the previous build cut in the page, and sent them).
   * Fix: cut page-view strings to some bound (e.g. 2,000) in the page, or size the check after the cut the relay applies.
   */
  it("records the page views of a SPA route with a 25,000-character URL and of the route after it", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const email = emailFor("long-url");
    await page.goto(pageUrl("tag", { "data-pageviews": "act:cm:viewed-page", "data-debug": "" }));
    await snippetLoaded(page);
    await page.evaluate((email) => relay("identify", { email }), email);
    await activitiesOf(email, 1);
    await page.evaluate(() => history.pushState(null, "", `?state=${"s".repeat(25_000)}`));
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

describe("review 2: reset() and a clock that steps back", () => {
  /**
   * FINDING (low–medium, silent loss): `reset()` stores its time `n` (device clock, forever), and
   * `take` forgets every held event with `w < n`. When the device clock steps back after a reset
   * (an NTP correction of a fast clock, a visitor fixing the time), events tracked *after* the reset,
   * held until the next visitor logs in, have `w < n` and are forgotten: uncounted (`d` unchanged),
   * unexplained, though snippet/README.md says only the events held *since before* the reset go.
   * Fix: compare with a monotonic or per-reset marker (e.g. store a reset counter `n` and stamp
   * held events with the counter they were tracked under), not wall-clock times.
   */
  it("delivers an event tracked after reset() when the device clock has since stepped back a minute", async () => {
    const context = await newVisitor(browser());
    await context.addInitScript(clockShift, 0);
    const page = await context.newPage();
    const email = emailFor("reset-clock-back");
    await page.goto(pageUrl("tag"));
    await snippetLoaded(page);
    await page.evaluate(() => relay("reset"));
    // The clock is corrected one minute back (it ran fast).
    await moveClock(page, -60_000);
    await page.evaluate(() => relay("track", "logged-in", { "str:cm:payment-plan": "after the reset" }));
    await sleep(100);
    await page.evaluate((email) => relay("identify", { email }), email);
    await activitiesOf(email, 1, 4_000).catch(() => []);
    const sent = await mine(email);
    const d = (await stored(page))?.d ?? 0;
    await context.close();
    expect({ sent: sent.length, d }).toEqual({ sent: 1, d: 0 });
  });
});
