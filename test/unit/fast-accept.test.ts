import fc from "fast-check";
import { describe, expect, it } from "vitest";
import catalogue from "../../relay.config.ts";
import { activitiesRequestSchema, fastAccept } from "../../shared/activities.ts";
import { FIELD_KINDS, type FieldKind } from "../../shared/field-ids.ts";
import { jsonBytesAtMost, valueCheck, valueSchema } from "../../shared/ortto-types.ts";

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

  it("bounds every JSON value's UTF-8 size from above, numbers of the longest spelling included", () => {
    const encoder = new TextEncoder();
    // The longest spellings of a number in JSON: 25 characters in the plain form, 24 with an exponent.
    const longNumbers = fc.constantFrom(-0.0000012345678901234567, -1.7976931348623157e308, -2.2250738585072014e-308, -(2 ** 53) - 2);
    const value = fc.oneof(fc.jsonValue({ maxDepth: 3 }), longNumbers, fc.array(longNumbers, { maxLength: 50 }), fc.array(fc.double()));
    fc.assert(
      fc.property(value, (v) => jsonBytesAtMost(v, Number.POSITIVE_INFINITY) >= encoder.encode(JSON.stringify(v)).length),
      { numRuns: 2000 },
    );
  });

  it("never accepts an activity over the size bound written as numbers of 25 characters", () => {
    // Nothing else in the activity, whose bound would otherwise cover the difference.
    for (let count = 600; count < 660; count++) {
      const items = Array.from({ length: count }, () => -0.0000012345678901234567);
      const body = { activities: [{ activity_id: "act:cm:placed-order", person_id: "0a", attributes: { "obj:cm:items": items } }] };
      expect([count, accepts(body)]).toEqual([count, schema.safeParse(body).success]);
    }
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

describe("fastAccept: an activity of every kind at once", () => {
  const schema = activitiesRequestSchema(catalogue);
  const accepts = fastAccept(catalogue);
  /** Mostly a valid value of the kind, now and then a near miss of any kind: so that many activities pass whole. */
  const mostly = <T>(good: fc.Arbitrary<T>) => fc.oneof({ arbitrary: good, weight: 40 }, { arbitrary: nearMisses, weight: 1 });
  const awkward = fc.constantFrom("x", "é", "\u0001", "😀", '"', "\\", "\ud800", "\udc00", " ", "\t", "\u2028", "\u00a0");
  const text = (max: number) =>
    fc.oneof(
      { arbitrary: fc.string({ unit: awkward, maxLength: max }), weight: 10 },
      fc.constantFrom("x".repeat(max), "x".repeat(max + 1), "é".repeat(max)),
    );
  const integer = fc.oneof({ arbitrary: fc.integer(), weight: 20 }, fc.constantFrom(2 ** 53 - 1, 2 ** 53, -0, 1.5));
  const url = fc.oneof(
    fc.constantFrom(
      "http://a",
      "https://a.b-c.d:9999/x?y#z",
      "https://user@a/",
      "https://a/ b",
      "https://a\\b",
      "https://a/\ud800",
      "https://a.1",
      "https://A.COM/",
      "https://xn--bcher-kva.example/",
      "https://a:65535/",
      "https://a/\u0000",
      "https://a/\u0085",
      "https://a/\u00a0",
      "https://a/\u2028x",
      "https://0x7f.a/",
      "javascript:alert(1)",
      "data:text/html,x",
      `https://${"a".repeat(247)}`,
      `https://${"a".repeat(248)}`,
    ),
    fc.string({ unit: fc.constantFrom(..."ax0X9-.:@/?#[]% \\é\u0000\u00a0"), maxLength: 20 }).map((rest) => `https://${rest}`),
  );
  const dateTime = fc.oneof(
    fc.constantFrom(
      "0000-01-01T00:00:00Z",
      "2026-12-06T24:00:00Z",
      "2026-12-06T23:59:60Z",
      "2026-12-06T19:00:00.123456789012345+14:00",
      "2026-12-06T19:00:00+23:59",
      "0096-02-29T00:00:00Z",
      "0100-02-29T00:00:00Z",
      "10000-01-01T00:00:00Z",
    ),
    fc.date({ noInvalidDate: true, min: new Date(-62167219200000), max: new Date(253402300799999) }).map((d) => d.toISOString()),
  );
  const date = fc.record({
    year: fc.oneof(fc.integer({ min: -1, max: 10_000 }), fc.constant(2026)),
    month: fc.integer({ min: 1, max: 12 }),
    day: fc.integer({ min: 1, max: 31 }),
    timezone: fc.constantFrom(
      "UTC",
      "utc",
      "Australia/Sydney",
      "Asia/Calcutta",
      "Asia/Kolkata",
      "US/EASTERN",
      "Etc/GMT+5",
      "+05:30",
      "Europe/Kyiv",
      "us/pacific",
    ),
  });
  const phone = fc.constantFrom({ c: "61", n: "401234567" }, { phone: "+61401234567", parse_with_country_code: true });
  const longNumbers = fc.array(fc.oneof(fc.double(), fc.constant(-0.0000012345678901234567)), { maxLength: 700 });
  const attributes = fc.record(
    {
      "str:cm:order-number": mostly(text(255)),
      "txt:cm:gift-message": mostly(text(4000)),
      "int:cm:item-count": mostly(integer),
      "int:cm:order-total": mostly(integer),
      "dtz:cm:delivery-date": mostly(date),
      "tme:cm:placed-at": mostly(dateTime),
      "bol:cm:first-order": mostly(fc.boolean()),
      "phn:cm:contact-phone": mostly(phone),
      "str:cm:receipt-url": mostly(url),
      "str:cm:shipping-method": mostly(fc.constantFrom("standard", "pickup", "Standard")),
      "sst:cm:categories": mostly(fc.array(text(255), { maxLength: 101 })),
      "obj:cm:items": mostly(fc.oneof(fc.jsonValue({ maxDepth: 4 }), longNumbers)),
    },
    { requiredKeys: [] },
  );
  const fields = fc.record(
    {
      "str::first": mostly(text(255)),
      "str::email": mostly(
        fc.oneof({ arbitrary: fc.constant("chris@example.com"), weight: 10 }, fc.emailAddress(), fc.constant(" chris@example.com")),
      ),
      "str::ei": mostly(text(255)),
      "phn::phone": mostly(phone),
    },
    { requiredKeys: [] },
  );
  const offsets = fc.constantFrom(-1000, -86_400_000, 299_000, 301_000, -90 * 86_400_000 + 400_000, -90 * 86_400_000);

  it("accepts only what the schema accepts, and gives back unchanged", () => {
    let accepted = 0;
    fc.assert(
      fc.property(
        attributes,
        fields,
        fc.option(offsets),
        fc.option(text(20)),
        fc.option(fc.oneof(nearMisses, fc.record({ custom: fc.record({ lat: fc.double(), city_name: text(50) }) }))),
        fc.option(fc.oneof({ arbitrary: fc.constant("0a"), weight: 20 }, fc.constantFrom("0A", "", "g"))),
        (attributes, fields, created, key, location, person_id) => {
          const activity: Record<string, unknown> = {
            activity_id: "act:cm:placed-order",
            attributes,
            fields: { "str::email": "c@example.com", ...fields },
          };
          if (created !== null) activity.created = new Date(Date.now() + created).toISOString();
          if (key !== null) activity.key = key;
          if (location !== null) activity.location = location;
          if (person_id !== null) activity.person_id = person_id;
          // As the relay reads it: from JSON text.
          const body = JSON.parse(JSON.stringify({ activities: [activity] }));
          if (!accepts(body)) return true;
          accepted++;
          const parsed = schema.safeParse(body);
          return parsed.success && same(parsed.data, body);
        },
      ),
      { numRuns: 3000 },
    );
    // The property says something only if many pass whole.
    expect(accepted).toBeGreaterThan(100);
  });
});
