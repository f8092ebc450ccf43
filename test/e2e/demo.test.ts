/// <reference types="node" />
/**
 * The demo as a new user tries it: `npm start`, open the demo page it prints, press the buttons,
 * and read the emulator's feed.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { emulator, newVisitor, resetEmulator, type StoredActivity, until, urls, useBrowser, watch } from "./helpers.ts";

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

  it("a page written with friendly names arrives in the emulator exactly as the same page written in Ortto's ids", async () => {
    await resetEmulator();
    const context = await newVisitor(browser());
    const page = await context.newPage();
    const seen = watch(page);
    await page.goto(urls().demo);
    await page.waitForFunction(() => (window as unknown as { relay?: { l?: 1 } }).relay?.l === 1);
    await page.click("#identify");
    // The demo's own buttons: friendly names, and the same order in Ortto's ids.
    await page.click("#order");
    await page.click("#order-raw");
    await page.click("#login");
    await page.evaluate(() => {
      relay("track", "placed-order", {
        orderNumber: "SAME-1",
        itemCount: 2,
        orderTotal: 24.99,
        weightKg: 0.29,
        deliveryDate: "2026-12-24",
        placedAt: Date.UTC(2026, 10, 27, 6, 56, 33),
        contactPhone: "+61 401 234 567",
        shippingMethod: "express",
        categories: ["desks", "chairs"],
        items: [{ item_id: "12345", item_name: "Laminate desk", price: 1000 }],
        conversionValue: 24.99,
      });
      relay("track", "act:cm:placed-order", {
        "str:cm:order-number": "SAME-1",
        "int:cm:item-count": 2,
        "int:cm:order-total": 24990,
        "int:cm:weight-kg": 290,
        "dtz:cm:delivery-date": { year: 2026, month: 12, day: 24, timezone: "Australia/Sydney" },
        "tme:cm:placed-at": "2026-11-27T06:56:33.000Z",
        "phn:cm:contact-phone": { phone: "+61401234567", parse_with_country_code: true },
        "str:cm:shipping-method": "express",
        "sst:cm:categories": ["desks", "chairs"],
        "obj:cm:items": [{ item_id: "12345", item_name: "Laminate desk", price: 1000 }],
        "int::v": 24990,
      });
    });
    const orders = await until("both orders of the evaluate and both buttons' orders", async () => {
      const stored = (await emulator()).activities.filter((a) => a.activity_id === "act:cm:placed-order");
      return stored.length === 4 && stored;
    });
    const same = orders.filter((a) => a.attributes["str:cm:order-number"] === "SAME-1");
    const comparable = (a: StoredActivity | undefined) => ({ fields: a?.fields, attributes: a?.attributes, person: a?.person_id });
    expect(same).toHaveLength(2);
    expect(comparable(same[0])).toEqual(comparable(same[1]));
    expect(same[0]?.attributes["int:cm:weight-kg"]).toBe(290);
    // The buttons' orders differ only in their random order numbers.
    const buttons = orders.filter((a) => a.attributes["str:cm:order-number"] !== "SAME-1");
    const withoutNumber = (a: StoredActivity | undefined) => ({ ...a?.attributes, "str:cm:order-number": undefined });
    expect(withoutNumber(buttons[0])).toEqual(withoutNumber(buttons[1]));
    expect(buttons[0]?.fields).toEqual({
      "str::email": "chris@example.com",
      "str::first": "Chris",
      "str::last": "Smith",
      "str:cm:company": "Vandalay Industries",
    });

    // The login's browser came from the relay (the page sent none), and the feed shows the display templates.
    const login = await until("the login", async () => (await emulator()).activities.find((a) => a.activity_id === "act:cm:logged-in"));
    expect(login.attributes).toEqual({
      "str:cm:payment-plan": "$100 starter plan",
      "bol:cm:account-owner": true,
      "int::v": 15300,
      "str:cm:web-browser": "Chrome",
    });
    const feed = await (await fetch(`${urls().emulator}/`)).text();
    expect(feed).toContain("Order number <em>SAME-1</em> placed, <em>2</em> items for <em>24.99</em>");
    expect(feed).toContain("Logged in on the <em>$100 starter plan</em> with <em>Chrome</em>");
    expect(seen.errors).toEqual([]);
    await context.close();
  });
});
