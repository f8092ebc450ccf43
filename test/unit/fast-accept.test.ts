import fc from "fast-check";
import { describe, expect, it } from "vitest";
import catalogue from "../../relay.config.ts";
import { activitiesRequestSchema, fastAccept } from "../../shared/activities.ts";
import { FIELD_KINDS, type FieldKind } from "../../shared/field-ids.ts";
import { valueCheck, valueSchema } from "../../shared/ortto-types.ts";

/**
 * The hot path's predicates may say no to a valid value (the zod schema then decides), but must
 * never say yes to an invalid one: that would forward what Ortto refuses. Held here on arbitrary
 * values and on near misses of each kind, and on whole requests.
 */
const kinds = Object.keys(FIELD_KINDS) as FieldKind[];

/** JSON with sorted keys: equal for values the relay would forward as the same JSON. */
const canon = (v: unknown): string =>
  JSON.stringify(v, (_key, value) =>
    value && typeof value === "object" && !Array.isArray(value)
      ? Object.fromEntries(
          Object.keys(value)
            .sort()
            .map((k) => [k, value[k]]),
        )
      : value,
  );
const same = (a: unknown, b: unknown) => canon(a) === canon(b);
const OPTIONS = ["standard", "express"];

/** Values near each kind's edges: the cases a hand-written check gets wrong. */
const nearMisses: fc.Arbitrary<unknown> = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.constantFrom("x".repeat(255), "x".repeat(256), "x".repeat(4000), "x".repeat(4001), "", " ", "standard", "Standard"),
  fc.oneof(fc.integer(), fc.double(), fc.constantFrom(2 ** 53, -(2 ** 53), 1.5, Number.NaN, Number.POSITIVE_INFINITY)),
  fc.record(
    {
      year: fc.oneof(fc.integer({ min: -1, max: 10_000 }), fc.constant(2024)),
      month: fc.integer({ min: 0, max: 13 }),
      day: fc.integer({ min: 0, max: 32 }),
      timezone: fc.constantFrom(
        "Australia/Sydney",
        "australia/sydney",
        "Asia/Kolkata",
        "UTC",
        "utc",
        "+05:30",
        "Mars/Olympus",
        "",
        "Etc/GMT+5",
        "x".repeat(65),
      ),
    },
    { requiredKeys: [] },
  ),
  fc
    .record({
      y: fc.integer({ min: 0, max: 9999 }),
      mo: fc.integer({ min: 0, max: 13 }),
      d: fc.integer({ min: 0, max: 32 }),
      h: fc.integer({ min: 0, max: 25 }),
      zone: fc.constantFrom("Z", "+11:00", "-05:30", "+24:00", "+0530", "", "z"),
      frac: fc.constantFrom("", ".5", ".123456789", "."),
    })
    .map(
      ({ y, mo, d, h, zone, frac }) =>
        `${String(y).padStart(4, "0")}-${String(mo).padStart(2, "0")}-${String(d).padStart(2, "0")}T${String(h).padStart(2, "0")}:30:59${frac}${zone}`,
    ),
  fc.constantFrom(
    "https://shop.example/r/1",
    "HTTPS://shop.example/",
    "http://",
    "https://",
    "ftp://shop.example/",
    "https://exa mple.com",
    "https://[::1]/",
    "https://shop.example/\u0000",
    `https://shop.example/${"a".repeat(240)}`,
    // What the schema takes but gives back changed: trimmed, without tabs and newlines.
    "https://shop.example/r/1 ",
    " https://shop.example/r/1",
    "https://shop.example/r/1\n",
    "https://shop.\texample/r/1",
    "https://shop.example/r\r/1",
    // Hosts the URL parser refuses or reads as an address.
    "https://1.2.3.999/",
    "https://shop.1/",
    "https://0x7f.1/",
    "https://xn--zz.example/",
    "https://shop.XN--zz/",
    "https://shop.example:99999/",
    "https://shop.example:/",
    "https://shop..example/",
    "https://-shop.example-/",
    "https://user:pw@shop.example/",
    "https://bücher.example/",
    "https://shop.example\\r\\1",
  ),
  // URL-like strings from the characters that decide where a URL's parts begin and end.
  fc
    .tuple(
      fc.constantFrom("https://", "http://", "HTTP://", "https:/", "https:"),
      fc.string({ unit: fc.constantFrom(..."ax0X9-.:@/?#[]% \t\n\\é"), maxLength: 24 }),
    )
    .map(([scheme, rest]) => scheme + rest),
  fc.constantFrom("chris@example.com", " chris@example.com ", "chris@example", "chris@@example.com", "a.b@c.io", ".a@b.co", "a@b.c"),
  fc.array(fc.oneof(fc.string({ maxLength: 5 }), fc.constantFrom("standard", "express")), { maxLength: 3 }),
  fc.constantFrom({ c: "61", n: "401234567" }, { phone: "+61401234567" }, { name: "Sydney" }, [], {}, null, JSON.parse('{"__proto__":0}')),
  fc.jsonValue({ maxDepth: 2 }),
);

describe("valueCheck: the hot path accepts only what the kind's schema accepts", () => {
  for (const kind of kinds) {
    it(`${kind}`, () => {
      const options = kind === "single_select" || kind === "multi_select" ? OPTIONS : undefined;
      const check = valueCheck(kind, options);
      const schema = valueSchema(kind, options);
      fc.assert(
        fc.property(fc.oneof(nearMisses, fc.anything()), (value) => {
          if (!check(value)) return true;
          const parsed = schema.safeParse(value);
          // Accepted, and given back unchanged: the relay forwards the input itself.
          return parsed.success && same(parsed.data, value);
        }),
        { numRuns: 3000 },
      );
    });
  }

  it("takes the common values of every kind without zod (the point of it)", () => {
    const common: [FieldKind, unknown][] = [
      ["text", "Google Chrome"],
      ["integer", 24990],
      ["boolean", true],
      ["date", { year: 2026, month: 12, day: 24, timezone: "Australia/Sydney" }],
      ["date", { year: 2024, month: 2, day: 29, timezone: "UTC" }],
      ["datetime", "2026-11-27T06:56:33.123Z"],
      ["datetime", "2026-11-27T06:56:33+11:00"],
      ["url", "https://shop.example/r/1001?x=1#y"],
      ["url", "http://localhost:8787/a b?c=ü#d"],
      ["url", "https://bücher.example/"],
      ["url", "https://[::1]/"],
      ["email", "chris@example.com"],
      ["multi_select", ["desks", "chairs"]],
      ["json", [{ item_id: "12345" }]],
    ];
    for (const [kind, value] of common) expect([kind, valueCheck(kind)(value)]).toEqual([kind, true]);
    expect(valueCheck("date")({ year: 2023, month: 2, day: 29, timezone: "UTC" })).toBe(false);
    expect(valueCheck("datetime")("2026-02-30T00:00:00Z")).toBe(false);
    // Taken by the schema, but trimmed: the relay would forward what the schema gives back.
    expect(valueCheck("url")("https://shop.example/r/1 ")).toBe(false);
  });
});

describe("fastAccept: required attributes", () => {
  const schema = activitiesRequestSchema(catalogue);
  const accepts = fastAccept(catalogue);
  it("never accepts a started-trial the schema refuses, whatever its attributes", () => {
    const attribute = fc.record(
      {
        "str:cm:plan": fc.oneof(fc.constantFrom("starter", "pro", "gold"), nearMisses),
        "dtz:cm:trial-ends": nearMisses,
        "str:cm:country": fc.oneof(fc.constant("AU"), nearMisses),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(attribute, (attributes) => {
        const body = { activities: [{ activity_id: "act:cm:started-trial", person_id: "00600e153df0a3b67ce60f00", attributes }] };
        if (!accepts(body)) return true;
        const parsed = schema.safeParse(body);
        return parsed.success && same(parsed.data, body) && attributes["str:cm:plan"] !== undefined;
      }),
      { numRuns: 2000 },
    );
  });
});

describe("fastAccept: whole requests", () => {
  const schema = activitiesRequestSchema(catalogue);
  const accepts = fastAccept(catalogue);
  const now = () => new Date(Date.now() - 60_000).toISOString();
  const valid = () => ({
    activities: [
      {
        activity_id: "act:cm:placed-order",
        key: "k-1",
        created: now(),
        fields: { "str::first": "Chris", "str::email": "chris@example.com" },
        attributes: {
          "str:cm:order-number": "A-1001",
          "int:cm:order-total": 24990,
          "dtz:cm:delivery-date": { year: 2026, month: 12, day: 24, timezone: "Australia/Sydney" },
          "tme:cm:placed-at": now(),
          "str:cm:receipt-url": "https://shop.example/r/1001",
          "sst:cm:categories": ["desks"],
          "obj:cm:items": [{ item_id: "1" }],
          "int::v": 24990,
        },
      },
      {
        activity_id: "act:cm:viewed-page",
        person_id: "00600e153df0a3b67ce60f00",
        attributes: { "str:cm:page-url": "https://shop.example/" },
      },
    ],
  });

  it("accepts a valid request", () => {
    expect(accepts(valid())).toBe(true);
    expect(schema.safeParse(valid()).success).toBe(true);
  });

  it("measures an activity near Ortto's 16 kB as the schema does", () => {
    const withMessage = (message: string) => {
      const body = valid();
      (body.activities[0]?.attributes as Record<string, unknown>)["txt:cm:gift-message"] = message;
      return body;
    };
    // 4,000 characters could take 24 kB of JSON; these take 4 kB (the bound is not the answer).
    expect(accepts(withMessage("x".repeat(4000)))).toBe(true);
    // Escaped, the same 4,000 take 24 kB: both refuse.
    expect(schema.safeParse(withMessage("\u0001".repeat(4000))).success).toBe(false);
    expect(accepts(withMessage("\u0001".repeat(4000)))).toBe(false);
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: fc.constantFrom("x", "é", "\u0001", "😀", '"'), maxLength: 255 }), { maxLength: 12 }),
        fc.string({ unit: fc.constantFrom("x", "é", "\u0001", "😀"), maxLength: 4000 }),
        (texts, message) => {
          const body = withMessage(message);
          const attributes = body.activities[0]?.attributes as Record<string, unknown>;
          attributes["sst:cm:categories"] = texts;
          return accepts(body) === schema.safeParse(body).success;
        },
      ),
      { numRuns: 300 },
    );
  });

  it("answers no, without throwing, for a value nested deeper than the walk to the size bound reached", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 200_000; i++) deep = [deep];
    const body = valid();
    (body.activities[0]?.attributes as Record<string, unknown>)["obj:cm:items"] = ["x".repeat(3000), deep];
    expect(accepts(body)).toBe(false);
  });

  it("never accepts what the schema refuses, for any one edit of a valid request", () => {
    const keys = fc.oneof(
      fc.constantFrom(
        "activity_id",
        "fields",
        "attributes",
        "created",
        "key",
        "person_id",
        "location",
        "__proto__",
        "async",
        "merge_by",
        "identity_token",
      ),
      fc.constantFrom("str::email", "str::ei", "bol::p", "int::v", "int:cm:order-total", "dtz:cm:delivery-date", "identity_token"),
      fc.string({ maxLength: 12 }),
    );
    const edit = fc.record({
      where: fc.constantFrom("request", "activity", "fields", "attributes"),
      key: keys,
      value: fc.oneof(nearMisses, fc.constant(undefined)),
    });
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 3 }), (edits) => {
        const body = valid() as unknown as Record<string, unknown> & { activities: Record<string, Record<string, unknown>>[] };
        const first = body.activities[0] as Record<string, Record<string, unknown>>;
        for (const { where, key, value } of edits) {
          const target = where === "request" ? body : where === "activity" ? first : (first[where] as Record<string, unknown>);
          if (typeof target !== "object" || target === null) continue;
          if (value === undefined) delete target[key];
          else Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
        }
        if (!accepts(body)) return true;
        const parsed = schema.safeParse(body);
        return parsed.success && same(parsed.data, body);
      }),
      { numRuns: 5000 },
    );
  });
});
