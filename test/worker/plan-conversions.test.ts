import { beforeEach, describe, expect, it } from "vitest";
import { emulator, post, postWith } from "./helpers.ts";

/**
 * What the page wrote, converted exactly to what Ortto takes or refused at the name the page wrote:
 * shorthands and Ortto ids given together, dates, phone strings, numbers, request.cf, the Referer.
 */
beforeEach(async () => {
  await emulator.reset();
});

const fields = { email: "chris@example.com" };
const order = (attributes: Record<string, unknown>) => ({ activities: [{ activity_id: "placed-order", fields, attributes }] });
const trial = (attributes: Record<string, unknown>) => ({
  activities: [{ activity_id: "started-trial", fields, attributes: { plan: "pro", ...attributes } }],
});
const forwarded = async () => (await emulator.requests())[0]?.body.activities?.[0];
type Refusal = { error: string; details: { path: string; message: string }[] };

describe("a value given both as the snippet's shorthand and as its Ortto id is refused", () => {
  // The plan's rule: an attribute given both ways is a 400 (company + str:cm:company is one), and so
  // is a name the shorthand pass expands, so neither value is thrown away silently.
  it.each([
    ["fields", "placed-order", { email: "a@example.com", "str::email": "b@example.com" }, {}, "fields.email"],
    ["fields", "placed-order", { ...fields, first: "Alice", "str::first": "Bob" }, {}, "fields.first"],
    [
      "attributes",
      "viewed-page",
      fields,
      { "page-url": "https://shop.example/a", "str:cm:page-url": "https://shop.example/b" },
      "attributes.page-url",
    ],
  ])("%s of %s given both ways is a 400, like company + str:cm:company", async (_what, activity_id, f, attributes, path) => {
    const res = await post({ activities: [{ activity_id, fields: f, attributes }] });
    const sent = await forwarded();
    expect({ status: res.status, forwarded: sent?.fields ?? null }).toMatchObject({ status: 400, forwarded: null });
    const body = (await res.json()) as Refusal;
    expect(body.details[0]?.path).toBe(`activities.0.${path}`);
    expect(body.details[0]?.message).toMatch(/given twice/);
  });
});

describe("refusals of shorthand-expanded keys name what the page wrote", () => {
  it.each([
    ["fields", { email: "not-an-email" }, {}, "activities.0.fields.email", "logged-in"],
    ["fields", { ...fields, phone: "12" }, {}, "activities.0.fields.phone", "logged-in"],
    ["attributes", fields, { referrer: "https://google.com/" }, "activities.0.attributes.referrer", "logged-in"],
  ])("%s: %j %j is refused at %s", async (_what, f, attributes, path, activity_id) => {
    const res = await post({ activities: [{ activity_id, fields: f, attributes }] });
    expect(res.status).toBe(400);
    const body = (await res.json()) as Refusal;
    expect(body.details.map((d) => d.path)).toEqual([path]);
  });

  it("'given twice' names the two keys the page wrote (pageUrl and page-url), not an id it never sent", async () => {
    const res = await post({
      activities: [
        { activity_id: "viewed-page", fields, attributes: { pageUrl: "https://shop.example/a", "page-url": "https://shop.example/b" } },
      ],
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as Refusal;
    expect(body.details[0]?.message).not.toMatch(/str:cm:page-url/);
  });

  it("a friendly phone string that is too short is refused at the name the page wrote, not at a .phone it never wrote", async () => {
    const res = await post(order({ contactPhone: "12" }));
    expect(res.status).toBe(400);
    const body = (await res.json()) as Refusal;
    expect(body.details.map((d) => d.path)).toEqual(["activities.0.attributes.contactPhone"]);
  });
});

describe("an ISO date-time whose day falls in year 0 (outside Ortto's years 1–9999) is refused", () => {
  it("0000-06-15T00:00:00Z is refused, not sent as 0001-06-15", async () => {
    const res = await post(order({ deliveryDate: "0000-06-15T00:00:00Z" }));
    expect({ status: res.status, sent: (await forwarded())?.attributes?.["dtz:cm:delivery-date"] ?? null }).toEqual({
      status: 400,
      sent: null,
    });
  });

  it("0001-01-01T00:00:00Z in America/Los_Angeles (31 Dec of year 0 there) is refused, not sent as 0001-12-31, a year later", async () => {
    const res = await postWith({}, trial({ trialEnds: "0001-01-01T00:00:00Z" }), { cf: { timezone: "America/Los_Angeles" } });
    expect({ status: res.status, sent: (await forwarded())?.attributes?.["dtz:cm:trial-ends"] ?? null }).toEqual({
      status: 400,
      sent: null,
    });
  });
});

describe("a friendly phone string is refused or sent as the number the page meant", () => {
  it.each([
    // An extension's digits are appended to the number.
    ["+1 (555) 123-4567 x89", "+1555123456789"],
    // The "(0)" trunk prefix written in international numbers stays in.
    ["+61 (0)401 234 567", "+610401234567"],
    // "ext." vanishes and its digit joins the number.
    ["+61 401 234 567 ext. 2", "+614012345672"],
  ])("%s is not forwarded as %s", async (value, wrong) => {
    const res = await post(order({ contactPhone: value }));
    const phone = ((await forwarded())?.attributes?.["phn:cm:contact-phone"] as { phone?: string } | undefined)?.phone;
    // Either refused (400, nothing sent) or sent as the number the page meant: never the digits glued together.
    expect({ status: res.status, phone }).not.toEqual({ status: 200, phone: wrong });
  });
});

describe("JSON numbers are read as the doubles JSON.parse gives, then converted exactly", () => {
  // A documented limit (docs/catalogue.md): the relay reads a number as every JavaScript JSON reader
  // does and converts that exactly. Literals beyond a double's precision, which no JSON.stringify
  // writes, would need a second scan of the body text on the hot path.
  const text = (attributes: string) =>
    `{"activities":[{"activity_id":"placed-order","fields":{"email":"chris@example.com"},"attributes":{${attributes}}}]}`;
  it.each([
    ['"orderTotal":19.9999999999999999', "int:cm:order-total", 20000],
    ['"orderTotal":1e-400', "int:cm:order-total", 0],
    ['"int:cm:item-count":15.0000000000000001', "int:cm:item-count", 15],
  ])("%s is read as the double JSON.parse gives (documented)", async (attributes, id, sent) => {
    const res = await post(text(attributes));
    expect({ status: res.status, sent: (await forwarded())?.attributes?.[id] }).toEqual({ status: 200, sent });
  });
});

describe("location fields of request.cf that are not strings", () => {
  it.each([[{ country: 42 }], [{ city: { name: "Sydney" } }]])("cf %j answers a 4xx or fills nothing, never a 5xx", async (cf) => {
    const res = await postWith({}, trial({}), { cf });
    expect(res.status).toBeLessThan(500);
  });
});

describe("page_url comes only from a Referer on the request's own origin", () => {
  it("a Referer on evil.example with Origin shop.example does not become the signup page", async () => {
    const res = await post(trial({}), { headers: { Referer: "https://evil.example/phish" } });
    expect(res.status).toBe(200);
    expect((await forwarded())?.attributes?.["str:cm:signup-page"]).not.toBe("https://evil.example/phish");
  });
});

describe("the page-view shorthands are cut at 255 UTF-16 units without splitting a character", () => {
  it("a page-title ending in an emoji at the cut is not forwarded with a lone surrogate", async () => {
    const title = `${"x".repeat(254)}😀 more`;
    const res = await post({ activities: [{ activity_id: "viewed-page", fields, attributes: { "page-title": title } }] });
    expect(res.status).toBe(200);
    const sent = (await forwarded())?.attributes?.["str:cm:page-title"] as string;
    // Ortto (JSON into Go strings) turns a lone surrogate into U+FFFD: a character the page never sent.
    expect(sent).toBe("x".repeat(254));
  });
});
