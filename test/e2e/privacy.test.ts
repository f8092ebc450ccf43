/// <reference types="node" />
/**
 * Consent and Global Privacy Control in a real browser: what is held back never reaches the
 * relay, nor storage.
 */
import { describe, expect, it } from "vitest";
import {
  activitiesOf,
  emailFor,
  emulator,
  newVisitor,
  pageUrl,
  sleep,
  snippetLoaded,
  stored,
  until,
  useBrowser,
  watch,
} from "./helpers.ts";

const browser = useBrowser();

/** Longer than the snippet's 1 s batch delay: what was going to be sent would have been by now. */
const SETTLE_MS = 2_000;

describe("consent and Global Privacy Control", () => {
  it('holds events back under data-consent="required" (nothing sent, nothing stored) until relay("consent", true)', async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const seen = watch(page);
    const email = emailFor("consent");
    await page.goto(pageUrl("tag", { "data-consent": "required" }));
    await snippetLoaded(page);
    await page.evaluate((email) => {
      relay("identify", { email });
      relay("track", "logged-in", { "str:cm:payment-plan": "consent plan" });
    }, email);
    await sleep(SETTLE_MS);
    expect(seen.sent).toEqual([]);
    expect(await stored(page)).toBeNull();
    expect((await emulator()).requests).toBe(0);

    await page.evaluate(() => relay("consent", true));
    const [activity] = await activitiesOf(email);
    expect(activity?.attributes).toEqual({ "str:cm:payment-plan": "consent plan", "str:cm:web-browser": "Chrome" });
    // The emulator may have it before the page has the relay's answer: the queue empties once it does.
    const after = await until("the queue to empty once the relay answered", async () => {
      const state = await stored(page);
      return state?.q.length === 0 && state;
    });
    expect(after).toMatchObject({ c: true, q: [] });
    expect(seen.sent).toHaveLength(1);
    expect(seen.errors).toEqual([]);
    await context.close();
  });

  it("sends and stores nothing when navigator.globalPrivacyControl is true, even after consent, and removes what an earlier page stored", async () => {
    const email = emailFor("gpc");
    const seededEmail = emailFor("gpc-earlier-page");
    // What an earlier page left unsent (its heartbeat, left at pagehide, and its event under a key of its own): without GPC,
    // the next page load would send it at once.
    const seed = (email: string) => {
      localStorage.setItem("relay:earlier-page", JSON.stringify({ h: 0, f: 0 }));
      localStorage.setItem(
        "relay:earlier-page|1000000001",
        JSON.stringify({
          a: {
            activity_id: "act:cm:logged-in",
            key: crypto.randomUUID(),
            created: Date.now(),
            fields: { "str::email": email },
          },
          k: "relay:earlier-page|1000000001",
        }),
      );
    };

    const context = await newVisitor(browser());
    await context.addInitScript(() => Object.defineProperty(Navigator.prototype, "globalPrivacyControl", { get: () => true }));
    await context.addInitScript(seed, seededEmail);
    const page = await context.newPage();
    const seen = watch(page);
    await page.goto(pageUrl("tag"));
    await snippetLoaded(page);
    expect(await page.evaluate(() => navigator.globalPrivacyControl)).toBe(true);
    expect(await stored(page)).toBeNull();
    await page.evaluate((email) => {
      relay("identify", { email });
      relay("track", "logged-in", { "str:cm:payment-plan": "gpc plan" });
      relay("consent", true);
      relay("track", "logged-in", { "str:cm:payment-plan": "gpc plan after consent" });
    }, email);
    await sleep(SETTLE_MS);
    expect(seen.sent).toEqual([]);
    expect(await stored(page)).toBeNull();
    expect((await emulator()).requests).toBe(0);
    expect(seen.errors).toEqual([]);
    await context.close();

    // The control: the same stored event, in a browser without GPC, is delivered on load.
    const control = await newVisitor(browser());
    await control.addInitScript(seed, seededEmail);
    const controlPage = await control.newPage();
    await controlPage.goto(pageUrl("tag"));
    const [delivered] = await activitiesOf(seededEmail);
    expect(delivered?.activity_id).toBe("act:cm:logged-in");
    await control.close();
  });
});
