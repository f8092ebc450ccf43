/// <reference types="node" />
/**
 * The demo as a new user tries it: `npm start`, open the demo page it prints, press the buttons,
 * and read the emulator's feed.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { newVisitor, until, urls, useBrowser, watch } from "./helpers.ts";

const browser = useBrowser();
const screenshot = join(import.meta.dirname, "..", "..", ".tmp", "feed.png");

describe("the demo page", () => {
  it('shows "Chris Smith logged in" in the emulator\'s feed after clicking identify then login on the demo page', async () => {
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const seen = watch(page);
    await page.goto(urls().demo);
    await page.waitForFunction(() => (window as unknown as { relay?: { l?: 1 } }).relay?.l === 1);
    await page.click("#identify");
    await page.click("#login");
    await expect.poll(() => page.textContent("#out")).toBe("tracked act:cm:logged-in");

    const feed = await until("the feed to show the login", async () => {
      const html = await (await fetch(`${urls().emulator}/`)).text();
      return html.includes("Chris Smith</strong> logged in") && html;
    });
    // The demo's tag has data-pageviews: the page view made before identify arrives too, once identified.
    expect(feed).toContain("Chris Smith</strong> viewed page");
    expect(feed).toContain("IP 127.0.0.1");

    // What the user sees: the feed page in the browser, kept for a human to look at.
    const feedPage = await context.newPage();
    await feedPage.goto(`${urls().emulator}/`);
    expect(await feedPage.getByText("Chris Smith logged in").count()).toBe(1);
    mkdirSync(join(screenshot, ".."), { recursive: true });
    await feedPage.screenshot({ path: screenshot, fullPage: true });
    expect(seen.errors).toEqual([]);
    await context.close();
  });
});
