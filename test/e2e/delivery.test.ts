/// <reference types="node" />
/**
 * Delivery in a real browser: a page on another origin than the relay, the relay under
 * `wrangler dev`, and what the local Ortto emulator finally received.
 */
import { describe, expect, it } from "vitest";
import {
  activitiesOf,
  emailFor,
  emulator,
  emulatorRequests,
  newVisitor,
  pageUrl,
  sleep,
  snippetLoaded,
  stored,
  until,
  useBrowser,
  watch,
} from "./helpers.ts";

// Each test is a visitor of its own (its own context and email) and looks only at what Ortto
// received for that visitor: they run at once.
const browser = useBrowser({ concurrent: true });

/**
 * What the emulator (Ortto) received for `email`: the create requests carrying one of its
 * activities, the activities it stored, and the re-sends it merged (by key and created).
 */
async function atOrtto(email: string) {
  const mine = (await emulator()).activities.filter((a) => a.fields["str::email"] === email);
  const requests = (await emulatorRequests()).filter((r) => r.body.activities?.some((a) => a.fields?.["str::email"] === email));
  const accepted = requests.filter((r) => r.status < 300).flatMap((r) => r.body.activities ?? []);
  return { requests, activities: mine, duplicates: accepted.filter((a) => a.fields?.["str::email"] === email).length - mine.length };
}

describe.concurrent("delivery from a real page", () => {
  it("delivers identify and track called before relay.js loads, with key, created, the person's fields, the visitor's IP and the relay's key", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const seen = watch(page);
    // Hold relay.js back a little, so the page's calls certainly find the loader's stub.
    await page.route("**/relay.js", async (route) => {
      await sleep(300);
      await route.continue();
    });
    const email = emailFor("early");
    await page.goto(pageUrl("early", { email }));
    expect(await page.evaluate(() => (window as unknown as { queuedBeforeLoad: number }).queuedBeforeLoad)).toBe(2);

    const [activity] = await activitiesOf(email);
    expect(activity).toBeDefined();
    const a = activity as NonNullable<typeof activity>;
    expect(a.activity_id).toBe("act:cm:logged-in");
    expect(a.fields).toMatchObject({ "str::email": email, "str::first": "Early", "str::last": "Bird" });
    // The browser is the relay's to fill, from the page's User-Agent (relay.config.ts: source browser).
    expect(a.attributes).toEqual({ "str:cm:payment-plan": "early plan", "bol:cm:account-owner": true, "str:cm:web-browser": "Chrome" });
    expect(a.location).toEqual({ source_ip: "127.0.0.1" });
    expect(a.api_key).toBe("local-emulator-key");

    // key and created were set in the browser (not by the relay), when the queued call ran.
    expect(seen.sent).toHaveLength(1);
    const wire = seen.sent[0]?.body.activities[0];
    // The tab's key (`relay:` and a UUID) and a 10-digit count (the relay's own keys are `relay:` and 40 hex digits).
    expect(a.key).toMatch(/^relay:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\|\d{10}$/);
    expect(a.key).toBe(wire?.key);
    // On the wire in ms; the relay writes it as Ortto's ISO string.
    expect(wire?.created).toEqual(expect.any(Number));
    expect(a.created).toBe(new Date(Math.round(wire?.created as number)).toISOString());
    const calledAt = Date.parse(await page.evaluate(() => (window as unknown as { calledAt: string }).calledAt));
    expect(Date.parse(a.created) - calledAt).toBeGreaterThanOrEqual(0);
    expect(Date.parse(a.created) - calledAt).toBeLessThan(5_000);

    // The relay forwarded it with its own X-Api-Key: the page never saw one.
    const { requests } = await atOrtto(email);
    expect(requests).toHaveLength(1);
    expect(requests[0]?.headers["x-api-key"]).toBe("local-emulator-key");
    expect(JSON.stringify(seen.sent)).not.toContain("local-emulator-key");
    expect(await stored(page)).toMatchObject({ q: [] });
    expect(seen.errors).toEqual([]);
    await context.close();
  });

  it("delivers a track made in the same tick as navigating away (a keepalive fetch on page hide), and keeps it leased for the next page", async () => {
    const context = await newVisitor(browser());
    // Which way the snippet sent it: Playwright does not see a request made while a page unloads,
    // so each page notes its sendBeacon and fetch calls in sessionStorage, which the next page of
    // this origin can read.
    await context.addInitScript(() => {
      const note = (how: string) => sessionStorage.setItem("sends", `${sessionStorage.getItem("sends") ?? ""}${how} `);
      const beacon = navigator.sendBeacon.bind(navigator);
      navigator.sendBeacon = (url, data) => {
        const ok = beacon(url, data);
        note(`beacon:${ok}`);
        return ok;
      };
      const fetch = window.fetch.bind(window);
      window.fetch = (input, init) => {
        note("fetch");
        return fetch(input, init);
      };
    });
    const page = await context.newPage();
    const seen = watch(page);
    const email = emailFor("leaving");
    await page.goto(pageUrl("tag"));
    await snippetLoaded(page);
    // Identify, track and leave at once: the 1 s batch timer never fires on this page, and the
    // next page has no snippet to send what was stored.
    await page.evaluate(
      ({ email, bye }) => {
        relay("identify", { email });
        relay("track", "placed-order", { "str:cm:order-number": "BYE-1", "int:cm:item-count": 1 });
        location.href = bye;
      },
      { email, bye: pageUrl("bye") },
    );
    await page.waitForURL(/bye\.html$/);

    const [activity] = await activitiesOf(email);
    expect(activity?.activity_id).toBe("act:cm:placed-order");
    expect(activity?.attributes).toMatchObject({ "str:cm:order-number": "BYE-1", "int:cm:item-count": 1 });
    expect(await page.evaluate(() => sessionStorage.getItem("sends")?.trim())).toBe("fetch");
    // The page could not hear the answer: the event stays stored with its lease (l), under a heartbeat
    // marked as left (h 0), for the next page with the snippet to send again (Ortto merges it by key and created).
    const left = await stored(page);
    expect(left).toMatchObject({ f: 0, i: { f: { email } } });
    expect(left?.tabs).toEqual([{ h: 0, q: [expect.objectContaining({ a: expect.any(Object), l: expect.any(Number) })] }]);
    expect(left?.q[0]?.a.key).toBe(activity?.key);
    await sleep(1_000);
    expect((await atOrtto(email)).requests).toHaveLength(1);
    expect(seen.errors).toEqual([]);
    await context.close();
  });

  it("keeps an event made offline in localStorage and delivers it exactly once when the network returns", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const seen = watch(page);
    const email = emailFor("offline");
    await page.goto(pageUrl("tag"));
    await snippetLoaded(page);

    await context.setOffline(true);
    await page.evaluate((email) => {
      relay("identify", { email });
      relay("track", "logged-in", { "str:cm:payment-plan": "offline plan" });
    }, email);
    // The send failed (no network): the event stays stored.
    const state = await until("a failed send, its event still stored", async () => {
      const s = seen.sent.some((x) => x.failed) && (await stored(page));
      return !!s && s.q.length > 0 && s;
    });
    expect(state.q).toHaveLength(1);
    const key = state.q[0]?.a.key;
    expect(seen.sent.length).toBeGreaterThanOrEqual(1);
    expect(seen.sent.every((s) => s.failed)).toBe(true);
    expect((await atOrtto(email)).requests).toHaveLength(0);

    await context.setOffline(false);
    const [activity] = await activitiesOf(email);
    expect(activity?.key).toBe(key);
    // Long enough for a pending backoff retry (1–2 s after one failure) to have gone too, were it still armed.
    await sleep(2_500);
    const view = await atOrtto(email);
    expect(view.activities).toHaveLength(1);
    expect(view.requests).toHaveLength(1);
    expect(view.duplicates).toBe(0);
    expect(await stored(page)).toMatchObject({ q: [], f: 0 });
    expect(seen.errors).toEqual([]);
    await context.close();
  });

  it("keeps an event stored across a reload while the relay is unreachable, and delivers it exactly once when it is back", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const seen = watch(page);
    const email = emailFor("reload");
    // The relay is unreachable for this page's activity requests (relay.js still loads).
    let attempts = 0;
    let reachable = false;
    await context.route("**/v1/activities/create", async (route) => {
      attempts++;
      if (reachable) await route.continue();
      else await route.abort("connectionrefused");
    });
    await page.goto(pageUrl("tag"));
    await snippetLoaded(page);
    await page.evaluate((email) => {
      relay("identify", { email });
      relay("track", "logged-in", { "str:cm:payment-plan": "reload plan" });
    }, email);
    const before = await until("a failed send, its event still stored", async () => {
      const s = attempts > 0 && (await stored(page));
      return !!s && s.q.length > 0 && s;
    });
    expect(before.q).toHaveLength(1);
    const { key, created } = before.q[0]?.a ?? {};

    // Reload while still unreachable: the new page finds the event in storage and tries it at once.
    // (Page hide sends every ready event, even after a failure, and the route does not see a request
    // made while the page unloads: the page reports itself offline, so that its hide sends nothing.)
    const triedBeforeReload = attempts;
    await page.evaluate(() => Object.defineProperty(navigator, "onLine", { value: false, configurable: true }));
    await page.reload();
    await snippetLoaded(page);
    await until("the reloaded page to try the stored event", async () => attempts > triedBeforeReload);
    const after = (await stored(page)) as NonNullable<Awaited<ReturnType<typeof stored>>>;
    expect(after.q.map((i) => i.a)).toEqual([before.q[0]?.a]);
    // (The request at page hide leaves from the browser process, which the context's route does not
    // intercept: it may have reached the relay; a re-send of it is merged, below.)

    // Back: the next retry (2–4 s after the second failure) delivers it.
    reachable = true;
    const [activity] = await activitiesOf(email, 1, 20_000);
    expect(activity?.key).toBe(key);
    // (The page's clock has fractions of a ms; the relay rounds.)
    expect(activity?.created).toBe(new Date(Math.round(created as number)).toISOString());
    // The page's own retry empties its queue (the activity may have come from the request at page hide).
    await until("the page's queue empty", async () => (await stored(page))?.q.length === 0, 20_000);
    const view = await atOrtto(email);
    expect(view.activities).toHaveLength(1);
    expect(await stored(page)).toMatchObject({ q: [], f: 0 });
    // Every attempt carried the same event: the same key and created, never a new one.
    expect(new Set(seen.sent.flatMap((s) => s.body.activities.map((a) => `${a.key} ${a.created}`)))).toEqual(
      new Set([`${key} ${created}`]),
    );
    expect(seen.errors).toEqual([]);
    await context.close();
  });

  it("drops a batch the relay refuses with a 4xx without throwing into the page, and forwards nothing", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const seen = watch(page);
    const email = emailFor("refused");
    await page.goto(pageUrl("tag", { "data-debug": "" }));
    await snippetLoaded(page);
    await page.evaluate((email) => {
      const anyRelay = relay as unknown as (...args: unknown[]) => void;
      // Bad arguments are ignored (warned about under data-debug), never thrown.
      anyRelay("track", 42);
      anyRelay("identify", null);
      anyRelay("no-such-command");
      anyRelay("track", "logged-in", "not an object");
      relay("identify", { email });
      // A mistyped value: the catalogue declares bol:cm:account-owner a boolean.
      relay("track", "logged-in", { "bol:cm:account-owner": "yes" });
    }, email);

    // The relay's answer, as the snippet reports it under data-debug.
    const refusal = await until("the snippet to report the refusal", async () => seen.warnings.find((w) => w.includes("400")));
    expect(refusal).toContain("400");
    expect(refusal).toContain("bol:cm:account-owner");
    expect(seen.warnings.filter((w) => w.startsWith("relay: I "))).toHaveLength(4);
    // Dropped, not retried: the queue is empty and no failure is counted.
    expect(await stored(page)).toMatchObject({ q: [], f: 0 });
    await sleep(1_500);
    expect(seen.sent).toHaveLength(1);
    const view = await atOrtto(email);
    expect(view.requests).toEqual([]);
    expect(view.activities).toEqual([]);
    expect(seen.errors).toEqual([]);
    // The page still works, and so does the snippet.
    expect(await page.evaluate(() => 1 + 1)).toBe(2);
    await context.close();
  });
});

describe.concurrent("delivery: an event too large for any request", () => {
  /**
   * An event over MAX_BATCH_BYTES / 3 (20,000 characters of JSON) fits no request: `take` gives it
   * up, counted in `d` and, under data-debug, warned "too large" with the event, then "dropped" with
   * the count, like the queue bound's. Kept, it would sit at the head of the stored queue, carried
   * from page to page, until 100 newer events pushed it out. The events around it go.
   */
  it("counts and explains an event too large to send, instead of keeping it forever", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const email = emailFor("too-large");
    await page.goto(pageUrl("tag", { "data-debug": "" }));
    await snippetLoaded(page);
    const warnings: string[] = [];
    page.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
    await page.evaluate((email) => {
      relay("identify", { email });
      relay("track", "logged-in", { "str:cm:payment-plan": "small" });
      relay("track", "logged-in", { "str:cm:payment-plan": "z".repeat(25_000) });
    }, email);
    await activitiesOf(email, 1);
    await sleep(2_500);
    const s = await stored(page);
    await context.close();
    expect({ stillStored: s?.q.length ?? 0, counted: s?.d ?? 0, warned: warnings.some((w) => w.startsWith("relay: B ")) }).toEqual({
      stillStored: 0,
      counted: 1,
      warned: true,
    });
  });
});
