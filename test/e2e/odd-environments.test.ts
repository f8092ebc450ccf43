/// <reference types="node" />
/**
 * "Never throws into the page" in odd environments (storage denied, as when a visitor blocks
 * cookies; a sandboxed iframe), and delivery from memory there.
 */
import { describe, expect, it } from "vitest";
import { activitiesOf, emailFor, emulator, newVisitor, pageUrl, sleep, snippetLoaded, urls, useBrowser, watch } from "./helpers.ts";

const browser = useBrowser({ backForwardCache: true });

describe("odd environments", () => {
  /** With localStorage throwing SecurityError on access, nothing is thrown and events go from memory. */
  it("throws nothing and delivers from memory when every localStorage access throws (cookies blocked)", async () => {
    const context = await newVisitor(browser());
    await context.addInitScript(() => {
      const deny = {
        get() {
          throw new DOMException("Access is denied for this document.", "SecurityError");
        },
        configurable: true,
      };
      try {
        Object.defineProperty(window, "localStorage", deny);
      } catch {
        Object.defineProperty(Window.prototype, "localStorage", deny);
      }
    });
    const page = await context.newPage();
    const seen = watch(page);
    const email = emailFor("storage-denied");
    await page.goto(pageUrl("tag", { "data-pageviews": "act:cm:viewed-page", "data-debug": "" }));
    await snippetLoaded(page);
    await page.evaluate((email) => {
      relay("identify", { email });
      relay("track", "logged-in", { "int::v": 1 });
      history.pushState(null, "", "/route-2");
    }, email);
    // The load's page view, the event and the SPA route's page view, all from memory.
    await activitiesOf(email, 3, 6_000);
    await page.evaluate((email) => {
      relay("reset");
      relay("consent", true);
      relay("consent", false);
      relay("consent", true);
      relay("track", "logged-in", { "int::v": 2 });
      document.dispatchEvent(new Event("visibilitychange"));
      window.dispatchEvent(new PageTransitionEvent("pageshow", { persisted: true }));
      window.dispatchEvent(new StorageEvent("storage", { key: "relay", newValue: "{" }));
      relay("identify", { email });
      relay("track", "logged-in", { "int::v": 3 });
    }, email);
    await activitiesOf(email, 6, 6_000).catch(() => []);
    await sleep(500);
    const got = (await emulator()).activities.filter((a) => a.fields["str::email"] === email);
    await context.close();
    // Held after the reset, the v2 event and the page view of the (synthetic) restore take the new
    // identity (the same person here): 6 in all.
    expect({ errors: seen.errors.map(String), delivered: got.length }).toEqual({ errors: [], delivered: 6 });
  });

  /** In a sandboxed iframe (opaque origin, storage throws), calls throw nothing. */
  it("throws nothing in a sandboxed iframe", async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const seen = watch(page);
    await page.goto(pageUrl("tag"));
    await snippetLoaded(page);
    const relayJs = `${urls().relay}/relay.js`;
    const result = await page.evaluate(async (src) => {
      const frame = document.createElement("iframe");
      frame.sandbox.add("allow-scripts");
      frame.srcdoc = `<script>var errors=[];addEventListener("error",function(e){errors.push(String(e.message))});addEventListener("unhandledrejection",function(e){errors.push(String(e.reason))});window.relay=window.relay||function(){(relay.q=relay.q||[]).push(arguments)}</script>
<script src="${src}" data-debug data-pageviews="act:cm:viewed-page"></script>
<script>relay("identify",{email:"sandbox@example.com"});relay("track","logged-in",{});relay("consent",false);relay("consent",true);relay("reset");relay("track","logged-in",{});
setTimeout(function(){dispatchEvent(new PageTransitionEvent("pagehide",{persisted:false}));parent.postMessage({loaded:!!relay.l,errors:errors},"*")},1500)</script>`;
      const answer = new Promise((resolve) => addEventListener("message", (e) => resolve(e.data), { once: true }));
      document.body.append(frame);
      return Promise.race([answer, new Promise((r) => setTimeout(() => r("no answer"), 5000))]);
    }, relayJs);
    await context.close();
    expect({ result, errors: seen.errors.map(String) }).toEqual({ result: { loaded: true, errors: [] }, errors: [] });
  });
});
