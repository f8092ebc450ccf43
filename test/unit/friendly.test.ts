import fc from "fast-check";
import { describe, expect, it } from "vitest";
import catalogue from "../../relay.config.ts";
import { activitiesRequestSchema, fastAccept } from "../../shared/activities.ts";
import { checkTimeZones, defineCatalogue } from "../../shared/catalogue.ts";
import { friendlyName, templateName } from "../../shared/field-ids.ts";
import { trackingPlan } from "../../shared/plan.ts";
import {
  ConversionError,
  orttoDate,
  orttoDateTime,
  pathAsSent,
  phoneObject,
  thousandths,
  translateRequest,
} from "../../worker/intake/friendly.ts";

const plan = trackingPlan(catalogue);
const refusal = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    if (err instanceof ConversionError) return err.message;
    throw err;
  }
  return undefined;
};

describe("friendly names", () => {
  it("default to the camelCase of the id's last part, with Ortto's built-ins named", () => {
    expect(friendlyName("str:cm:payment-plan")).toBe("paymentPlan");
    expect(friendlyName("int:cm:order-total")).toBe("orderTotal");
    expect(friendlyName("int::v")).toBe("conversionValue");
    expect(friendlyName("str::email")).toBe("email");
    expect(friendlyName("str:cm:company")).toBe("company");
    expect(friendlyName("dtz::b")).toBe("birthday");
    expect(friendlyName("str:cm:a--b-c2")).toBe("aBC2");
    expect(templateName("str:cm:order-number")).toBe("order_number");
  });

  it("are what the demo catalogue's plan uses", () => {
    const order = plan.activities.get("act:cm:placed-order");
    expect(order?.byName.get("orderTotal")?.id).toBe("int:cm:order-total");
    expect(order?.byName.get("conversionValue")?.id).toBe("int::v");
    expect(plan.personByName.get("company")?.id).toBe("str:cm:company");
    // A relay-filled attribute has its name too (a trusted server may send it); a page may not.
    expect(plan.activities.get("act:cm:logged-in")?.byName.get("webBrowser")?.source).toBe("browser");
  });

  it("may be set by the catalogue, and must be unique and usable", () => {
    const c = defineCatalogue({
      activities: { "act:cm:x": { name: "X", attributes: { "int:cm:total": { kind: "currency", name: "constructor" } } } },
      personFields: { "str::email": true },
    });
    expect(trackingPlan(c).activities.get("act:cm:x")?.byName.get("constructor")?.id).toBe("int:cm:total");
    expect(() =>
      defineCatalogue({
        activities: { "act:cm:x": { name: "X", attributes: { "str:cm:a": { kind: "text", name: "b" }, "str:cm:b": "text" } } },
        personFields: {},
      }),
    ).toThrow(/friendly name b is taken by str:cm:a/);
    expect(() =>
      defineCatalogue({ activities: { "act:cm:x": { name: "X", attributes: { "str:cm:3d": "text" } } }, personFields: {} }),
    ).toThrow(/default friendly name 3d is not an identifier/);
    expect(() =>
      defineCatalogue({
        activities: { "act:cm:x": { name: "X", attributes: { "str:cm:a": { kind: "text", name: "__proto__" } } } },
        personFields: {},
      }),
    ).toThrow(/expected a friendly name/);
  });
});

describe("the catalogue's tracking plan rules", () => {
  const one =
    (attributes: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    () =>
      defineCatalogue({ activities: { "act:cm:x": { name: "X", attributes, ...extra } }, personFields: {} } as never);

  it("refuses a source that cannot fill the kind, a required relay-filled attribute, a time zone on a non-date", () => {
    expect(one({ "int:cm:n": { kind: "integer", source: "browser" } })).toThrow(/source browser fills text, long_text, single_select/);
    expect(one({ "str:cm:b": { kind: "text", source: "browser", required: true } })).toThrow(/not required from the page/);
    expect(one({ "str:cm:b": { kind: "text", timezone: "UTC" } })).toThrow(/timezone is for date attributes only/);
    expect(one({ "dtz:cm:d": { kind: "date", timezone: "+05:30" } })).toThrow(/IANA time zone/);
  });

  it("keeps the snippet's person field shorthands for Ortto's built-in fields", () => {
    expect(() => defineCatalogue({ activities: {}, personFields: { "str:cm:email": "text" } })).toThrow(
      /the friendly name email is the snippet's shorthand for str::email/,
    );
    expect(() => defineCatalogue({ activities: {}, personFields: { "str::email": { kind: "email", name: "emailAddress" } } })).toThrow(
      /keeps its name email/,
    );
    expect(() =>
      defineCatalogue({ activities: {}, personFields: { "str:cm:first-name": { kind: "text", name: "firstName" } } }),
    ).not.toThrow();
  });

  it("keeps the snippet's page-view attribute shorthands (u, t, r, and referrer from cached scripts) for the page-view attributes", () => {
    // The relay expands them in every activity before friendly names: an attribute named so would never be reached.
    expect(one({ "str:cm:r": "text" })).toThrow(/the friendly name r is the snippet's shorthand for str:cm:referrer/);
    expect(one({ "int:cm:rating": { kind: "integer", name: "t" } })).toThrow(
      /the friendly name t is the snippet's shorthand for str:cm:page-title/,
    );
    expect(one({ "txt:cm:referrer": "long_text" })).toThrow(/the friendly name referrer is the snippet's shorthand for str:cm:referrer/);
    expect(one({ "str:cm:referrer": "text", "str:cm:page-url": "url" })).not.toThrow();
  });

  it("refuses a display template naming an attribute the activity does not have", () => {
    expect(one({ "str:cm:number": "text" }, { display: "Order {{attribute.number}} of {{attribute.item_name}}" })).toThrow(
      /\{\{attribute.item_name\}\} is not an attribute of this activity \(it has number\)/,
    );
    expect(one({ "str:cm:number": "text" }, { display: "Order {{ attribute.number }}" })).not.toThrow();
  });

  it("finds time zones the runtime does not know (the build's check)", () => {
    expect(checkTimeZones(catalogue)).toEqual([]);
    const c = defineCatalogue({
      activities: { "act:cm:x": { name: "X", attributes: { "dtz:cm:d": { kind: "date", timezone: "Mars/Olympus" } } } },
      personFields: {},
    });
    expect(checkTimeZones(c)).toEqual([
      "activities.act:cm:x.attributes.dtz:cm:d.timezone: Mars/Olympus is not an IANA time zone this runtime knows",
    ]);
  });
});

describe("thousandths: decimals and currency × 1000, exactly", () => {
  it("converts without float error", () => {
    expect(1.005 * 1000).toBe(1004.9999999999999); // why it does not multiply
    expect(thousandths(1.005)).toBe(1005);
    expect(thousandths(0.29)).toBe(290);
    expect(thousandths(19.99)).toBe(19990);
    expect(thousandths(24.99)).toBe(24990);
    expect(thousandths(1234567.891)).toBe(1234567891);
    expect(thousandths(64.28)).toBe(64280);
    expect(thousandths(15.3)).toBe(15300);
    expect(thousandths(-0.001)).toBe(-1);
    expect(thousandths(0)).toBe(0);
    expect(Object.is(thousandths(-0), 0)).toBe(true);
    expect(thousandths(1e3)).toBe(1000000);
    // A double this large holds only two decimals: it converts what it holds.
    expect(thousandths(9007199254740.99)).toBe(9007199254740990);
    expect(thousandths(-9007199254740.99)).toBe(-9007199254740990);
  });

  it("refuses more than 3 decimals, numbers beyond a safe integer, and what is not a number", () => {
    expect(refusal(() => thousandths(15.3001))).toMatch(/^expected at most 3 decimals/);
    expect(refusal(() => thousandths(1e-7))).toMatch(/^expected at most 3 decimals/);
    expect(refusal(() => thousandths(1.5e-10))).toMatch(/^expected at most 3 decimals/);
    expect(refusal(() => thousandths(1e21))).toMatch(/safe integer/);
    expect(refusal(() => thousandths(Number.MAX_VALUE))).toMatch(/safe integer/);
    expect(refusal(() => thousandths(9007199254741))).toMatch(/safe integer/);
    expect(refusal(() => thousandths("24.99"))).toBe("expected a number such as 24.99");
    expect(refusal(() => thousandths(Number.NaN))).toBe("expected a number such as 24.99");
  });

  it("is exact for every number of at most 3 decimals, and refuses every other (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: -9_007_199_254_740, max: 9_007_199_254_740 }), fc.integer({ min: 0, max: 999 }), (whole, frac) => {
        const text = `${whole < 0 ? "-" : ""}${Math.abs(whole)}.${String(frac).padStart(3, "0")}`;
        const expected = BigInt(whole) * 1000n + (whole < 0 ? -1n : 1n) * BigInt(frac);
        const n = Number(text);
        // Doubles this large cannot hold three decimals: only test what the number still says.
        if (String(n).replace(/0+$/, "").replace(/\.$/, "") !== text.replace(/0+$/, "").replace(/\.$/, "")) return true;
        if (expected > BigInt(Number.MAX_SAFE_INTEGER) || expected < -BigInt(Number.MAX_SAFE_INTEGER))
          return /safe integer/.test(refusal(() => thousandths(n)) ?? "");
        return BigInt(thousandths(n)) === expected;
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (n) => {
        const message = refusal(() => thousandths(n));
        if (message === undefined) {
          const result = thousandths(n);
          return Number.isSafeInteger(result) && result / 1000 === n;
        }
        // n has at most 3 decimals exactly when its 3-decimal rounding reads back as n (below 1e21, where toFixed is decimal).
        if (Math.abs(n) >= 1e21) return /safe integer/.test(message);
        if (Number(n.toFixed(3)) !== n) return /3 decimals/.test(message);
        return Math.abs(n) > Number.MAX_SAFE_INTEGER / 1000 && /safe integer/.test(message);
      }),
      { numRuns: 5000 },
    );
  });
});

describe("dates and date-times", () => {
  it("makes Ortto's date from a day, in the zone given", () => {
    expect(orttoDate("2026-12-24", "Australia/Sydney")).toEqual({ year: 2026, month: 12, day: 24, timezone: "Australia/Sydney" });
    expect(refusal(() => orttoDate("2026-02-30", "UTC"))).toBe("expected a real calendar date");
    expect(refusal(() => orttoDate("24/12/2026", "UTC"))).toMatch(/expected a date such as 2026-12-24/);
    expect(refusal(() => orttoDate(20261224, "UTC"))).toMatch(/expected a date such as 2026-12-24/);
  });

  it("takes the day an ISO date-time falls on in the zone", () => {
    expect(orttoDate("2026-12-23T14:00:00Z", "Australia/Sydney")).toEqual({ year: 2026, month: 12, day: 24, timezone: "Australia/Sydney" });
    expect(orttoDate("2026-12-23T14:00:00Z", "UTC")).toEqual({ year: 2026, month: 12, day: 23, timezone: "UTC" });
    expect(refusal(() => orttoDate("2026-12-23T14:00:00", "UTC"))).toMatch(/with a zone/);
  });

  it("keeps an ISO date-time and makes one from epoch milliseconds", () => {
    expect(orttoDateTime("2026-11-27T06:56:33+11:00")).toBe("2026-11-27T06:56:33+11:00");
    expect(orttoDateTime(Date.UTC(2026, 10, 27, 6, 56, 33))).toBe("2026-11-27T06:56:33.000Z");
    expect(refusal(() => orttoDateTime(1.5))).toMatch(/epoch milliseconds/);
    expect(refusal(() => orttoDateTime(8.64e15 + 1))).toMatch(/epoch milliseconds/);
    expect(refusal(() => orttoDateTime(-62198755200000))).toMatch(/epoch milliseconds/); // year 0
  });
});

/** The time zone of a converted date attribute. */
const zoneOf = (attributes: unknown, id: string) =>
  (attributes as Record<string, { timezone: string } | undefined> | undefined)?.[id]?.timezone;

describe("translateRequest", () => {
  const request = (attributes: Record<string, unknown>, fields: Record<string, unknown> = { "str::email": "chris@example.com" }) => ({
    activities: [{ activity_id: "act:cm:placed-order", fields, attributes }],
  });

  it("turns friendly names into Ortto ids with converted values, which the fast path and the schema accept", () => {
    const body = request(
      { orderTotal: 24.99, deliveryDate: "2026-12-24", weightKg: 1.5, contactPhone: "+61 401 234 567", "str:cm:order-number": "A-1" },
      { "str::email": "chris@example.com", company: "Vandalay Industries" },
    );
    const { issues, renamed } = translateRequest(body, plan, { visitorZone: "Europe/Paris", fromPage: true });
    // The catalogue dates deliveries on the shop's calendar (Australia/Sydney), whatever the visitor's zone.
    expect(issues).toEqual([]);
    expect(body.activities[0]).toEqual({
      activity_id: "act:cm:placed-order",
      fields: { "str::email": "chris@example.com", "str:cm:company": "Vandalay Industries" },
      attributes: {
        "int:cm:order-total": 24990,
        "dtz:cm:delivery-date": { year: 2026, month: 12, day: 24, timezone: "Australia/Sydney" },
        "int:cm:weight-kg": 1500,
        "phn:cm:contact-phone": { phone: "+61401234567", parse_with_country_code: true },
        "str:cm:order-number": "A-1",
      },
    });
    expect(renamed?.get(0)?.attributes?.get("int:cm:order-total")).toBe("orderTotal");
    expect(fastAccept(catalogue)(body)).toBe(true);
  });

  it("leaves an activity in Ortto ids as it is (the same object) and its values unconverted", () => {
    const body = request({ "int::v": 15.3, "int:cm:order-total": 24990 });
    const attributes = body.activities[0]?.attributes;
    expect(translateRequest(body, plan, { fromPage: true })).toEqual({ issues: [] });
    expect(body.activities[0]?.attributes).toBe(attributes);
    expect(activitiesRequestSchema(catalogue).safeParse(body).success).toBe(false);
  });

  it("dates in the catalogue's zone first, then the visitor's, then UTC", () => {
    const trial = (zone?: string) => {
      const body = {
        activities: [{ activity_id: "act:cm:started-trial", person_id: "0060", attributes: { plan: "pro", trialEnds: "2026-12-24" } }],
      };
      translateRequest(body, plan, { visitorZone: zone, fromPage: true });
      return zoneOf(body.activities[0]?.attributes, "dtz:cm:trial-ends");
    };
    const order = (zone?: string) => {
      const body = request({ deliveryDate: "2026-12-24" });
      translateRequest(body, plan, { visitorZone: zone, fromPage: true });
      return zoneOf(body.activities[0]?.attributes, "dtz:cm:delivery-date");
    };
    expect(order("Europe/Paris")).toBe("Australia/Sydney");
    expect(trial("Europe/Paris")).toBe("Europe/Paris");
    expect(trial(undefined)).toBe("UTC");
  });

  it("names what the page sent in every refusal", () => {
    const body = request({ conversionValue: 15.3001, orderTotal: "24.99", deliveryDate: "tomorrow", "int::v": 1 });
    body.activities.push({
      activity_id: "act:cm:logged-in",
      fields: {},
      attributes: { webBrowser: "Netscape", "str:cm:web-browser": "x" },
    });
    expect(translateRequest(body, plan, { fromPage: true }).issues).toEqual([
      { path: "activities.0.attributes.conversionValue", message: "given twice: as conversionValue and as int::v; send one" },
      { path: "activities.0.attributes.orderTotal", message: "expected a number such as 24.99" },
      { path: "activities.0.attributes.deliveryDate", message: "expected a date such as 2026-12-24, or an ISO date and time with a zone" },
      {
        path: "activities.1.attributes.webBrowser",
        message: "set by the relay from the visitor's User-Agent (source browser in the catalogue): a page does not send it",
      },
    ]);
  });

  it("lets a trusted server send a relay-filled attribute, by either name", () => {
    const body = { activities: [{ activity_id: "act:cm:logged-in", person_id: "0060", attributes: { webBrowser: "Netscape" } }] };
    expect(translateRequest(body, plan, { fromPage: false }).issues).toEqual([]);
    expect(body.activities[0]?.attributes).toEqual({ "str:cm:web-browser": "Netscape" });
  });

  it("keeps prototype keys plain: __proto__, constructor and toString are unknown names, left for the schema to refuse", () => {
    const attributes = JSON.parse('{"__proto__": {"polluted": 1}, "constructor": 1, "toString": 2, "orderTotal": 1.5}');
    const body = request(attributes);
    expect(translateRequest(body, plan, { fromPage: true }).issues).toEqual([]);
    const out = body.activities[0]?.attributes as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.keys(out)).toEqual(["__proto__", "constructor", "toString", "int:cm:order-total"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(fastAccept(catalogue)(body)).toBe(false);
    expect(activitiesRequestSchema(catalogue).safeParse(body).success).toBe(false);
  });

  it("puts the page's friendly name back into the schema's paths", () => {
    const renamed = new Map([[0, { attributes: new Map([["int:cm:order-total", "orderTotal"]]) }]]);
    expect(pathAsSent(["activities", 0, "attributes", "int:cm:order-total"], renamed)).toEqual([
      "activities",
      0,
      "attributes",
      "orderTotal",
    ]);
    expect(pathAsSent(["activities", 1, "attributes", "int:cm:order-total"], renamed)).toEqual([
      "activities",
      1,
      "attributes",
      "int:cm:order-total",
    ]);
    expect(pathAsSent(["activities", 0, "fields", "int:cm:order-total"], renamed)).toEqual([
      "activities",
      0,
      "fields",
      "int:cm:order-total",
    ]);
  });
});

describe("phoneObject", () => {
  it.each([
    ["+61 401-234-567", "+61401234567"],
    ["(02) 9999 9999", "0299999999"],
    ["+1.555.123.4567", "+15551234567"],
  ])("%s → %s", (value, phone) => {
    expect(phoneObject(value)).toEqual({ phone, parse_with_country_code: true });
  });

  it.each([
    "+1 (555) 123-4567 x89",
    "+61 401 234 567 ext. 2",
    "+61 (0)401 234 567",
    "+44 ( 0 ) 20 7946 0000",
    "555-1234 / 555-5678",
    "1+2",
  ])("%s is refused, never glued into another number", (value) => {
    expect(() => phoneObject(value)).toThrow(ConversionError);
  });

  it("puts a schema path back to the name the page wrote, no deeper than a string it wrote", () => {
    const renamed = new Map([
      [0, { attributes: new Map([["phn:cm:contact-phone", "contactPhone"]]), whole: new Set(["attributes.phn:cm:contact-phone"]) }],
    ]);
    expect(pathAsSent(["activities", 0, "attributes", "phn:cm:contact-phone", "phone"], renamed)).toEqual([
      "activities",
      0,
      "attributes",
      "contactPhone",
    ]);
  });
});

describe("orttoDate and year 0", () => {
  it.each([
    ["0000-06-15T00:00:00Z", "UTC"],
    ["0000-12-31T23:59:59Z", "UTC"],
    ["0001-01-01T00:00:00Z", "America/Los_Angeles"],
    ["0001-01-01T03:00:00+05:00", "UTC"],
  ])("%s in %s is refused (year 0 is outside Ortto's 1–9999)", (value, zone) => {
    expect(() => orttoDate(value, zone)).toThrow(/years 1–9999/);
  });
});
