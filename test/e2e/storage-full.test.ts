/// <reference types="node" />
/**
 * A visitor whose browser storage is full (the site filled the origin's localStorage), in
 * Chromium: the snippet throws nothing, delivers within the page, and says what it could not keep.
 */
import { describe, expect, it } from "vitest";
import { activitiesOf, emailFor, emulator, newVisitor, pageUrl, snippetLoaded, startProxy, until, useBrowser, watch } from "./helpers.ts";

const browser = useBrowser();

describe("storage full", () => {
  it("throws nothing, delivers in the page, warns U for each unstored event and L for the one still unsent when the page goes", async () => {
    const proxy = await startProxy();
    try {
      const context = await newVisitor(browser());
      // The snippet's warnings, kept in sessionStorage (its own quota): those of a page that unloads reach no console listener.
      await context.addInitScript(() => {
        const warn = console.warn;
        console.warn = (...args: unknown[]) => {
          sessionStorage.setItem("warnings", `${sessionStorage.getItem("warnings") ?? ""}${String(args[1])}\n`);
          warn(...args);
        };
      });
      const page = await context.newPage();
      const seen = watch(page);
      const email = emailFor("storage-full");
      await page.goto(pageUrl("tag", { "data-endpoint": proxy.url, "data-debug": "" }));
      await snippetLoaded(page);
      await page.evaluate((email) => relay("identify", { email }), email);
      // The site fills the storage.
      await page.evaluate(() => {
        const chunk = "x".repeat(512 * 1024);
        try {
          for (let n = 0; n < 100; n++) localStorage.setItem(`site-${n}`, chunk);
        } catch {}
        let s = "x".repeat(1024);
        for (let n = 0; n < 1e4 && s.length; n++) {
          try {
            localStorage.setItem(`site-fill-${n}`, s);
          } catch {
            s = s.slice(0, s.length >> 1);
          }
        }
      });
      await page.evaluate(() => relay("track", "logged-in", { "int::v": 1 }));
      await activitiesOf(email, 1);
      // The relay goes down, one more event, and the visitor leaves while offline: it is lost, and said to be.
      proxy.rule = () => ({ status: 503 });
      await page.evaluate(() => relay("track", "logged-in", { "int::v": 2 }));
      await until("the failed attempt", async () => proxy.requests.length >= 2);
      await context.setOffline(true);
      await page.goto(pageUrl("bye")).catch(() => {});
      await context.setOffline(false);
      await page.goto(pageUrl("bye"));
      const codes = ((await page.evaluate(() => sessionStorage.getItem("warnings"))) ?? "").split("\n");
      expect(codes.filter((c) => c === "U").length).toBeGreaterThanOrEqual(2);
      expect(codes).toContain("L");
      expect(seen.errors).toEqual([]);
      expect((await emulator()).activities.filter((a) => a.fields["str::email"] === email)).toHaveLength(1);
      await context.close();
    } finally {
      await proxy.close();
    }
  });
});
