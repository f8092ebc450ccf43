/// <reference types="node" />
/**
 * Review of the snippet from an unlucky visitor's side (several tabs, consent, clocks). Each test
 * states what the README promises; a failing test is a finding (severity and fix in its comment).
 */
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { activitiesOf, clockShift, emailFor, newVisitor, pageUrl, sleep, snippetLoaded, stored, useBrowser } from "./helpers.ts";

const browser = useBrowser({ backForwardCache: true });

describe("review: consent withdrawn in one tab while another tracks", () => {
  /**
   * FINDING (medium, privacy): README: "`false` forgets the identity and every unsent event, of
   * every tab ... it stores only the refusal". Tab A's consent(false) wipes every key, but tab B
   * only learns of it from the `storage` event, which comes later (another process; here made
   * deterministic by B being A's window.open child, so B's call runs in A's task). An event B
   * tracks in that gap is written by B's end-of-task persist under B's own key after the wipe.
   * B's storage handler then empties B's memory (`q = []`) but never removes B's key, and B's
   * pagehide does nothing (not allowed). So the event stays stored after the opt-out, and once the
   * visitor consents again, the next page adopts it as a stale queue and sends it.
   * Fix: in `joined` (and wherever `allowed()` turns false), remove this tab's own key as well
   * as emptying `q` (e.g. `if (!allowed()) { q = []; put(own); }` — `put` bypasses `allowed()`),
   * and/or have `persist` re-read the shared state before writing (skip the write when `c` is false).
   */
  it("keeps nothing stored after consent(false) in one tab, even for an event another tab tracked before it heard", async () => {
    const context = await newVisitor(browser());
    await context.addInitScript(clockShift, 0);
    const email = emailFor("withdraw-race");
    const a = await context.newPage();
    await a.goto(pageUrl("tag"));
    await snippetLoaded(a);
    // Tab B, opened by A (same event loop, so A can call into B within one task).
    const [b] = await Promise.all([
      context.waitForEvent("page"),
      a.evaluate((url) => {
        (window as unknown as { b: Window | null }).b = window.open(url, "b");
      }, pageUrl("tag")),
    ]);
    await snippetLoaded(b as Page);
    await a.evaluate((email) => relay("identify", { email }), email);
    await sleep(300);
    // A withdraws; in the same moment (before B's storage event), B tracks.
    await a.evaluate(() => {
      relay("consent", false);
      (window as unknown as { b: Window & { relay: typeof relay } }).b.relay("track", "logged-in", {
        "str:cm:payment-plan": "tracked at the opt-out",
      });
    });
    await sleep(500);
    const after = await stored(a);
    // README: only the refusal is stored.
    const leaked = after?.q ?? [];
    await (b as Page).close();
    // The visitor consents again later; a page started more than STALE_MS later adopts B's queue.
    await a.evaluate(() => relay("consent", true));
    const c = await context.newPage();
    await c.addInitScript(() => {
      (window as unknown as { clockShift: number }).clockShift = 180_000;
    });
    await c.goto(pageUrl("tag"));
    await snippetLoaded(c);
    const sent = await activitiesOf(email, 1, 5_000).catch(() => []);
    await context.close();
    expect({ stored: leaked.length, sent: sent.length }).toEqual({ stored: 0, sent: 0 });
  });
});
