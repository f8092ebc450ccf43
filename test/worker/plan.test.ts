import { beforeEach, describe, expect, it } from "vitest";
import { emulator, type PostOptions, post, postWith } from "./helpers.ts";

/**
 * The tracking plan at the edge (relay.config.ts): friendly names converted to Ortto's ids and
 * values, raw ids kept strict, refusals that name what the page sent, and the attributes the relay
 * fills from the request.
 */
beforeEach(async () => {
  await emulator.reset();
});

const CHROME_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const SAFARI_IPHONE =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const SERVER = { SERVER_TOKEN: "plan-server-token" };
const fields = { email: "chris@example.com", first: "Chris" };
const order = (attributes: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  activities: [{ activity_id: "placed-order", fields, attributes, ...extra }],
});
const forwarded = async () => (await emulator.requests())[0]?.body.activities?.[0];

async function refusal(res: Response) {
  expect(res.status).toBe(400);
  const body = (await res.json()) as { error: string; details: { path: string; message: string }[] };
  // Nothing invalid reaches Ortto.
  expect(await emulator.requests()).toEqual([]);
  return body;
}

describe("friendly names, converted at the edge", () => {
  it("arrives in Ortto exactly as the same activity written in Ortto's ids", async () => {
    const created = new Date(Date.now() - 60_000).toISOString();
    const same = { key: "order-1", created };
    const friendly = order(
      {
        orderNumber: "A-1001",
        orderTotal: 24.99,
        weightKg: 1.25,
        deliveryDate: "2026-12-24",
        placedAt: Date.UTC(2026, 10, 27, 6, 56, 33),
        contactPhone: "+61 401 234 567",
        shippingMethod: "express",
        categories: ["desks"],
        conversionValue: 24.99,
      },
      same,
    );
    const raw = {
      activities: [
        {
          activity_id: "act:cm:placed-order",
          fields: { "str::email": "chris@example.com", "str::first": "Chris" },
          attributes: {
            "str:cm:order-number": "A-1001",
            "int:cm:order-total": 24990,
            "int:cm:weight-kg": 1250,
            "dtz:cm:delivery-date": { year: 2026, month: 12, day: 24, timezone: "Australia/Sydney" },
            "tme:cm:placed-at": "2026-11-27T06:56:33.000Z",
            "phn:cm:contact-phone": { phone: "+61401234567", parse_with_country_code: true },
            "str:cm:shipping-method": "express",
            "sst:cm:categories": ["desks"],
            "int::v": 24990,
          },
          ...same,
        },
      ],
    };
    const cf = { timezone: "Australia/Sydney" };
    expect((await postWith({}, raw, { ip: "203.0.113.7", cf })).status).toBe(200);
    expect((await postWith({}, friendly, { ip: "203.0.113.7", cf })).status).toBe(200);
    const [first, second] = (await emulator.requests()).map((r) => r.body.activities?.[0]);
    expect(second).toEqual(first);
    // The same key and created: Ortto merged the second into the first.
    expect((await emulator.activities()).duplicates).toBe(1);
  });

  it.each([
    [0.29, 290],
    [19.99, 19990],
    [1234567.891, 1234567891],
    [1.005, 1005],
    [-15.3, -15300],
  ])("converts currency %d to %d exactly", async (value, expected) => {
    expect((await post(order({ orderTotal: value }))).status).toBe(200);
    expect((await forwarded())?.attributes?.["int:cm:order-total"]).toBe(expected);
  });

  it("refuses more than 3 decimals with a 400 naming the attribute as the page wrote it, never rounding", async () => {
    const body = await refusal(await post(order({ conversionValue: 15.3001 })));
    expect(body.error).toBe(
      "Invalid request: activities.0.attributes.conversionValue expected at most 3 decimals (Ortto stores decimals and currency × 1000)",
    );
    const tiny = await refusal(await post(order({ weightKg: 1e-7 })));
    expect(tiny.details).toEqual([
      { path: "activities.0.attributes.weightKg", message: "expected at most 3 decimals (Ortto stores decimals and currency × 1000)" },
    ]);
    const huge = await refusal(await post(order({ orderTotal: 1e21 })));
    expect(huge.details[0]?.message).toMatch(/safe integer/);
  });

  it("keeps Ortto's ids as they are and strict: int::v 1530 stays 1530, 15.3 is a 400", async () => {
    expect((await post(order({ "int::v": 1530 }))).status).toBe(200);
    expect((await forwarded())?.attributes?.["int::v"]).toBe(1530);
    await emulator.reset();
    const body = await refusal(await post(order({ "int::v": 15.3 })));
    expect(body.details).toEqual([{ path: "activities.0.attributes.int::v", message: "expected an integer" }]);
  });

  it("refuses an attribute given both ways", async () => {
    const body = await refusal(await post(order({ conversionValue: 15.3, "int::v": 15300 })));
    expect(body.details).toEqual([
      { path: "activities.0.attributes.conversionValue", message: "given twice: as conversionValue and as int::v; send one" },
    ]);
  });

  it("names the friendly name in the schema's refusals too (a select's option, a text's length, a wrong kind)", async () => {
    const body = await refusal(await post(order({ shippingMethod: "drone", orderNumber: "x".repeat(300), firstOrder: "yes" })));
    expect(body.details).toEqual([
      { path: "activities.0.attributes.orderNumber", message: "expected at most 255 characters" },
      { path: "activities.0.attributes.firstOrder", message: "expected a boolean" },
      { path: "activities.0.attributes.shippingMethod", message: "expected one of: standard, express, pickup" },
    ]);
    const unknown = await refusal(await post(order({ orderTotl: 24.99 })));
    expect(unknown.details).toEqual([
      {
        path: "activities.0.attributes.orderTotl",
        message: "unknown attribute orderTotl: not declared in the catalogue for this activity",
      },
    ]);
  });

  it("puts a plain date in the catalogue's zone, else the visitor's (request.cf.timezone), else UTC", async () => {
    expect((await postWith({}, order({ deliveryDate: "2026-12-24" }), { cf: { timezone: "Europe/Paris" } })).status).toBe(200);
    expect((await forwarded())?.attributes?.["dtz:cm:delivery-date"]).toEqual({
      year: 2026,
      month: 12,
      day: 24,
      timezone: "Australia/Sydney",
    });

    const trialEnds = async (value: string, cf?: Record<string, unknown>) => {
      await emulator.reset();
      const trial = { activities: [{ activity_id: "started-trial", fields, attributes: { plan: "pro", trialEnds: value } }] };
      expect((await postWith({}, trial, { cf })).status).toBe(200);
      return (await forwarded())?.attributes?.["dtz:cm:trial-ends"];
    };
    expect(await trialEnds("2026-12-24", { timezone: "Europe/Paris" })).toEqual({
      year: 2026,
      month: 12,
      day: 24,
      timezone: "Europe/Paris",
    });
    // An instant: the day it is in that zone.
    const instant = "2026-12-24T23:30:00Z";
    expect(await trialEnds(instant, { timezone: "Australia/Sydney" })).toEqual({
      year: 2026,
      month: 12,
      day: 25,
      timezone: "Australia/Sydney",
    });
    expect(await trialEnds(instant, { timezone: "not a zone" })).toEqual({ year: 2026, month: 12, day: 24, timezone: "UTC" });
    expect(await trialEnds(instant)).toEqual({ year: 2026, month: 12, day: 24, timezone: "UTC" });
  });

  it("refuses a date that is not one, naming it", async () => {
    const body = await refusal(await post(order({ deliveryDate: "2026-02-30" })));
    expect(body.error).toBe("Invalid request: activities.0.attributes.deliveryDate expected a real calendar date");
  });

  it("takes person fields by friendly name", async () => {
    const body = { activities: [{ activity_id: "logged-in", fields: { email: "chris@example.com", company: "Vandalay Industries" } }] };
    expect((await post(body)).status).toBe(200);
    expect((await forwarded())?.fields).toEqual({ "str::email": "chris@example.com", "str:cm:company": "Vandalay Industries" });
  });

  it("refuses a missing required attribute, naming both its names", async () => {
    const body = await refusal(
      await post({ activities: [{ activity_id: "started-trial", fields, attributes: { trialEnds: "2026-12-24" } }] }),
    );
    expect(body.details).toEqual([
      { path: "activities.0.attributes.str:cm:plan", message: "required by the catalogue: send plan (or str:cm:plan)" },
    ]);
  });

  it("answers 400, never 5xx, for prototype keys as names, and pollutes nothing", async () => {
    for (const name of ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"]) {
      const text = `{"activities":[{"activity_id":"placed-order","fields":{"email":"chris@example.com","${name}":1},"attributes":{"${name}":{"x":1},"orderTotal":1.5}}]}`;
      const res = await post(text);
      expect([name, res.status]).toEqual([name, 400]);
      const { details } = (await res.json()) as { details: { path: string }[] };
      expect(details.map((d) => d.path)).toContain(`activities.0.attributes.${name}`);
    }
    expect(({} as Record<string, unknown>).x).toBeUndefined();
    expect(await emulator.requests()).toEqual([]);
  });
});

describe("attributes the relay fills", () => {
  const page = (ua: string, extra: PostOptions = {}) => ({ ...extra, headers: { "User-Agent": ua, ...extra.headers } });

  it("fills the browser from the User-Agent, for a page that did not send it", async () => {
    expect(
      (await post({ activities: [{ activity_id: "logged-in", fields, attributes: { paymentPlan: "starter" } }] }, page(CHROME_MAC))).status,
    ).toBe(200);
    expect((await forwarded())?.attributes).toEqual({ "str:cm:payment-plan": "starter", "str:cm:web-browser": "Chrome" });
  });

  it("refuses a page's own value, by either name: a page cannot forge it", async () => {
    for (const attributes of [{ webBrowser: "Netscape Navigator" }, { "str:cm:web-browser": "Netscape Navigator" }]) {
      const body = await refusal(await post({ activities: [{ activity_id: "logged-in", fields, attributes }] }, page(CHROME_MAC)));
      expect(body.details[0]?.message).toBe(
        "set by the relay from the visitor's User-Agent (source browser in the catalogue): a page does not send it",
      );
    }
  });

  it("keeps a trusted server's own value, and fills nothing from the server's request", async () => {
    const activity = { activity_id: "logged-in", fields, attributes: { "str:cm:web-browser": "Netscape Navigator" } };
    const headers = { Authorization: `Bearer ${SERVER.SERVER_TOKEN}`, "User-Agent": CHROME_MAC };
    expect((await postWith(SERVER, { activities: [activity] }, { origin: null, headers })).status).toBe(200);
    expect((await forwarded())?.attributes).toEqual({ "str:cm:web-browser": "Netscape Navigator" });
    await emulator.reset();
    expect((await postWith(SERVER, { activities: [{ ...activity, attributes: {} }] }, { origin: null, headers })).status).toBe(200);
    expect((await forwarded())?.attributes).toEqual({});
  });

  it("fills device, OS, country, city and the page from the request", async () => {
    const trial = { activities: [{ activity_id: "started-trial", fields, attributes: { plan: "starter" } }] };
    const cf = { country: "AU", city: "Sydney", timezone: "Australia/Sydney" };
    const res = await postWith({}, trial, {
      cf,
      headers: { "User-Agent": SAFARI_IPHONE, Referer: "https://shop.example/pricing?plan=starter" },
    });
    expect(res.status).toBe(200);
    expect((await forwarded())?.attributes).toEqual({
      "str:cm:plan": "starter",
      "str:cm:device-type": "mobile",
      "str:cm:operating-system": "iOS",
      "str:cm:country": "AU",
      "str:cm:city": "Sydney",
      "str:cm:signup-page": "https://shop.example/pricing?plan=starter",
    });
  });

  it("leaves out what the request does not give, or what does not fit the attribute", async () => {
    const trial = { activities: [{ activity_id: "started-trial", fields, attributes: { plan: "pro" } }] };
    // No User-Agent, no cf, no Referer: the Origin is the page's address.
    expect((await post(trial)).status).toBe(200);
    expect((await forwarded())?.attributes).toEqual({ "str:cm:plan": "pro", "str:cm:signup-page": "https://shop.example" });
    // A long address loses its query; a device type outside the select's options is left out.
    await emulator.reset();
    const long = `https://shop.example/pricing?${"utm=x&".repeat(60)}`;
    const res = await post(trial, {
      headers: { "User-Agent": "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36", Referer: long },
    });
    expect(res.status).toBe(200);
    const attributes = (await forwarded())?.attributes;
    expect(attributes?.["str:cm:signup-page"]).toBe("https://shop.example/pricing");
    expect(attributes?.["str:cm:device-type"]).toBe("tv");
  });
});
