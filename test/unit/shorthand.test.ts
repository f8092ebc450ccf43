import { describe, expect, it } from "vitest";
import { type Expansion, expandShorthands, shorthandNames } from "../../worker/intake/shorthand.ts";

describe("expandShorthands (the snippet's short forms, expanded by the relay)", () => {
  it("expands an activity id without act: and the person field shorthands, a phone string to Ortto's phone object", () => {
    const body = {
      activities: [
        {
          activity_id: "logged-in",
          fields: {
            email: "chris@example.com",
            first: "Chris",
            last: "Smith",
            ei: "cus_42",
            phone: "+61 401-234-567",
            "str:cm:company": "V",
          },
        },
      ],
    };
    expect(expandShorthands(body)).toEqual({
      activities: [
        {
          activity_id: "act:cm:logged-in",
          fields: {
            "str::email": "chris@example.com",
            "str::first": "Chris",
            "str::last": "Smith",
            "str::ei": "cus_42",
            "phn::phone": { phone: "+61401234567", parse_with_country_code: true },
            "str:cm:company": "V",
          },
        },
      ],
    });
  });

  it("leaves Ortto's ids alone, refuses a value given both ways (never drops one), and converts a phn::phone string", () => {
    const body = {
      activities: [
        {
          activity_id: "act:cm:logged-in",
          fields: { "str::email": "a@example.com", email: "b@example.com", "phn::phone": "0401 234 567" },
        },
        { activity_id: "act:cm:logged-in", fields: { "phn::phone": { c: "61", n: "401234567" } } },
      ],
    };
    const expansion: Expansion = { issues: [], used: [] };
    expect(expandShorthands(body, expansion)).toEqual({
      activities: [
        {
          activity_id: "act:cm:logged-in",
          // Both kept, for the relay's 400 (and, without it, for the schema to refuse `email`).
          fields: {
            "str::email": "a@example.com",
            email: "b@example.com",
            "phn::phone": { phone: "0401234567", parse_with_country_code: true },
          },
        },
        { activity_id: "act:cm:logged-in", fields: { "phn::phone": { c: "61", n: "401234567" } } },
      ],
    });
    expect(expansion.issues).toEqual([{ path: "activities.0.fields.email", message: "given twice: as email and as str::email; send one" }]);
  });

  it("refuses a phone string that is not one number, at the name the page wrote, and records what it expanded", () => {
    const body = {
      activities: [
        { activity_id: "act:cm:logged-in", fields: { email: "a@example.com", phone: "+1 (555) 123-4567 x89" } },
        { activity_id: "act:cm:logged-in", fields: { "phn::phone": "+44 (0)20 7946 0000" } },
        { activity_id: "act:cm:viewed-page", fields: { "str::email": "a@example.com" }, attributes: { referrer: "r" } },
      ],
    };
    const expansion: Expansion = { issues: [], used: [] };
    expandShorthands(body, expansion);
    expect(expansion.issues).toEqual([
      {
        path: "activities.0.fields.phone",
        message: "expected a phone number: digits, spaces, dashes, dots, brackets and a leading +; no extension",
      },
      {
        path: "activities.1.fields.phn::phone",
        message: "expected a phone number without a (0) trunk prefix: +44 20 7946 0000, not +44 (0)20 7946 0000",
      },
    ]);
    // Left as strings: the schema refuses them too.
    expect(body.activities[0]?.fields).toEqual({ "str::email": "a@example.com", "phn::phone": "+1 (555) 123-4567 x89" });
    const names = shorthandNames(expansion);
    expect(names?.get(0)?.fields).toEqual(
      new Map([
        ["str::email", "email"],
        ["phn::phone", "phone"],
      ]),
    );
    expect(names?.get(1)).toBeUndefined();
    expect(names?.get(2)?.attributes).toEqual(new Map([["str:cm:referrer", "referrer"]]));
  });

  it("cuts the page-view shorthands to 255 characters as it expands them, and leaves Ortto's ids for the schema", () => {
    const long = `https://shop.example/${"p".repeat(400)}`;
    const body = {
      activities: [
        { activity_id: "viewed-page", attributes: { "page-url": long, "page-title": "t".repeat(300), referrer: "" } },
        { activity_id: "viewed-page", attributes: { "str:cm:page-title": "t".repeat(300), "page-url": 42 } },
      ],
    };
    expect(expandShorthands(body)).toEqual({
      activities: [
        {
          activity_id: "act:cm:viewed-page",
          attributes: { "str:cm:page-url": long.slice(0, 255), "str:cm:page-title": "t".repeat(255), "str:cm:referrer": "" },
        },
        { activity_id: "act:cm:viewed-page", attributes: { "str:cm:page-title": "t".repeat(300), "str:cm:page-url": 42 } },
      ],
    });
  });

  it("expands the page-view attributes as the snippet sends them (u, t, r) and as scripts cached from before do, naming the one-letter name in errors", () => {
    const long = `https://shop.example/${"p".repeat(400)}`;
    const body = {
      activities: [
        { activity_id: "viewed-page", attributes: { u: long, t: "Cart", r: "https://shop.example/" } },
        { activity_id: "viewed-page", attributes: { "page-url": "https://shop.example/a", "page-title": "A", referrer: "" } },
      ],
    };
    const expansion: Expansion = { issues: [], used: [] };
    expect(expandShorthands(body, expansion)).toEqual({
      activities: [
        {
          activity_id: "act:cm:viewed-page",
          attributes: { "str:cm:page-url": long.slice(0, 255), "str:cm:page-title": "Cart", "str:cm:referrer": "https://shop.example/" },
        },
        {
          activity_id: "act:cm:viewed-page",
          attributes: { "str:cm:page-url": "https://shop.example/a", "str:cm:page-title": "A", "str:cm:referrer": "" },
        },
      ],
    });
    expect(expansion.issues).toEqual([]);
    expect(shorthandNames(expansion)?.get(0)?.attributes?.get("str:cm:page-title")).toBe("t");
  });

  it("writes a created in ms as Ortto's ISO 8601 string, and leaves a string or a number that is no date alone", () => {
    const ms = Date.UTC(2026, 10, 27, 6, 0, 0, 123);
    const body = {
      activities: [
        { activity_id: "logged-in", created: ms },
        { activity_id: "logged-in", created: "2026-11-27T06:00:00.000Z" },
        { activity_id: "logged-in", created: 1e300 },
        { activity_id: "logged-in", created: Number.NaN },
      ],
    };
    expect((expandShorthands(body) as typeof body).activities.map((a) => a.created)).toEqual([
      "2026-11-27T06:00:00.123Z",
      "2026-11-27T06:00:00.000Z",
      1e300,
      Number.NaN,
    ]);
  });

  it("moves each created in ms by the relay's receipt time less the device's t (in 10 s steps), and takes t off", () => {
    const at = Date.UTC(2026, 10, 27, 6, 0, 0, 0);
    const fast = 2 * 3_600_000; // the device's clock is 2 h fast
    const body = {
      t: at + fast - 300, // sent at `at` (its clock), received 300 ms later
      activities: [
        { activity_id: "logged-in", created: at + fast - 60_000 }, // tracked a minute before sending
        { activity_id: "logged-in", created: "2026-11-27T05:00:00.000Z" }, // a string is left alone
      ],
    };
    const out = expandShorthands(body, { issues: [], used: [] }, at) as Record<string, unknown> & typeof body;
    expect(out.activities.map((a) => a.created)).toEqual(["2026-11-27T05:59:00.000Z", "2026-11-27T05:00:00.000Z"]);
    expect("t" in out).toBe(false);
    // A device whose clock is right is never moved (its latency rounds to 0): the created it stamped, to the ms.
    const right = { t: at - 2_400, activities: [{ activity_id: "logged-in", created: at - 5_123 }] };
    expect((expandShorthands(right, undefined, at) as typeof right).activities[0]?.created).toBe(new Date(at - 5_123).toISOString());
    // A re-send, later and with another latency, gets the same created again (Ortto merges it on key and created).
    for (const [later, latency] of [
      [0, 300],
      [5_000, 900],
      [70_000, 2_100],
    ] as const) {
      const again = { t: at + fast - latency + later, activities: [{ activity_id: "logged-in", created: at + fast - 60_000 }] };
      expect((expandShorthands(again, undefined, at + later) as typeof again).activities[0]?.created).toBe("2026-11-27T05:59:00.000Z");
    }
    // Without t (a server, an older snippet): as sent.
    const server = { activities: [{ activity_id: "logged-in", created: at - 5_123 }] };
    expect((expandShorthands(server, undefined, at + 3_600_000) as typeof server).activities[0]?.created).toBe(
      new Date(at - 5_123).toISOString(),
    );
  });

  it("leaves created as it is when the device is within a minute of the relay: the difference may be time in transit", () => {
    const at = Date.UTC(2026, 10, 27, 6, 0, 0, 0);
    // A request held 20 s (or 59 s) on its way, and its re-send a moment later: the same created.
    for (const transit of [20_000, 59_000, 300]) {
      const body = { t: at - transit, activities: [{ activity_id: "logged-in", created: at - 60_000 }] };
      expect((expandShorthands(body, undefined, at) as typeof body).activities[0]?.created).toBe(new Date(at - 60_000).toISOString());
    }
    // A minute or more: a wrong clock, corrected.
    const slow = { t: at - 61_000, activities: [{ activity_id: "logged-in", created: at - 70_000 }] };
    expect((expandShorthands(slow, undefined, at) as typeof slow).activities[0]?.created).toBe(new Date(at - 10_000).toISOString());
  });

  it("rounds a page's created in fractions of a ms (its clock is performance.now()'s), t in fractions too", () => {
    const at = Date.UTC(2026, 10, 27, 6, 0, 0, 0);
    const page = { t: at - 0.4, activities: [{ activity_id: "logged-in", created: at - 5_000.6 }] };
    expect((expandShorthands(page, { issues: [], used: [] }, at) as typeof page).activities[0]?.created).toBe(
      new Date(at - 5_001).toISOString(),
    );
    // Without t (a server), a fraction is left for the schema to refuse.
    const server = { activities: [{ activity_id: "logged-in", created: at - 5_000.6 }] };
    expect((expandShorthands(server, undefined, at) as typeof server).activities[0]?.created).toBe(at - 5_000.6);
  });

  it("refuses a t that is not a date in ms, naming t, and never throws on one far off", () => {
    for (const t of ["1764223200000", Number.NaN, Number.POSITIVE_INFINITY, -1, 0, 1e300, null, {}]) {
      const expansion: Expansion = { issues: [], used: [] };
      expandShorthands({ t, activities: [{ activity_id: "logged-in", created: 1 }] }, expansion);
      expect(expansion.issues.map((i) => i.path)).toEqual(["t"]);
    }
    // A t at the edge of what a Date holds, with a created that would go beyond it: left a number, for the schema to refuse.
    const far = { t: 1, activities: [{ activity_id: "logged-in", created: 8.64e15 }] };
    expect((expandShorthands(far, { issues: [], used: [] }) as typeof far).activities[0]?.created).toBe(8.64e15);
  });

  it("leaves whatever is not an activities body for the schema to refuse", () => {
    for (const body of [null, 42, "x", [], {}, { activities: "x" }, { activities: [null, 1, { activity_id: 42, fields: [] }] }]) {
      expect(expandShorthands(structuredClone(body))).toEqual(body);
    }
  });
});
