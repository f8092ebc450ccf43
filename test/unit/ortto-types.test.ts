import { describe, expect, it } from "vitest";
import type { FieldKind } from "../../shared/field-ids.ts";
import { dateTimeMs, isDateTime, isoDateTime, valueSchema } from "../../shared/ortto-types.ts";

/** For each kind: values Ortto unmarshals, and values it would refuse (with the message we give). */
const cases: Record<FieldKind, { valid: unknown[]; invalid: [unknown, string][] }> = {
  text: {
    valid: ["Microsoft Windows", "", "x".repeat(255)],
    invalid: [
      [7, "expected a string"],
      ["x".repeat(256), "expected at most 255 characters"],
    ],
  },
  long_text: {
    valid: ["It was a dark and stormy night.", "x".repeat(4000)],
    invalid: [
      ["x".repeat(4001), "expected at most 4000 characters"],
      [null, "expected a string"],
    ],
  },
  integer: {
    valid: [0, -3, 1530, Number.MAX_SAFE_INTEGER],
    invalid: [
      [1.5, "expected an integer"],
      ["12", "expected an integer"],
      [2 ** 60, "safe integer"],
    ],
  },
  decimal: { valid: [64280], invalid: [[64.28, "expected an integer"]] },
  currency: { valid: [24990], invalid: [["$24.99", "expected an integer"]] },
  boolean: {
    valid: [true, false],
    invalid: [
      ["true", "expected a boolean"],
      [1, "expected a boolean"],
    ],
  },
  date: {
    valid: [
      { year: 2022, month: 3, day: 4, timezone: "Australia/Sydney" },
      { year: 2024, month: 2, day: 29, timezone: "UTC" },
      { year: 50, month: 6, day: 1, timezone: "UTC" },
    ],
    invalid: [
      [{ year: 2023, month: 2, day: 29, timezone: "UTC" }, "expected a real calendar date"],
      [{ year: 2022, month: 13, day: 1, timezone: "UTC" }, "expected a month 1–12"],
      [{ year: 2022, month: 3, day: 4, timezone: "Mars/Olympus" }, "IANA time zone"],
      [{ year: 2022, month: 3, day: 4 }, "IANA time zone"],
      ["2022-03-04", "expected a date"],
    ],
  },
  datetime: {
    valid: ["2026-11-27T06:56:33Z", "2026-11-27T06:56:33.601+11:00"],
    invalid: [
      ["2026-11-27", "ISO 8601"],
      ["last Tuesday", "ISO 8601"],
      [1700000000, "ISO 8601"],
    ],
  },
  phone: {
    valid: [{ c: "61", n: "401234567" }, { phone: "61401234567", parse_with_country_code: true }, { phone: "+61401234567" }],
    invalid: [
      [{ c: "61" }, "expected a phone"],
      ["0401 234 567", "expected a phone"],
      [{ c: "61", n: "40-123" }, "expected a national number of 3–15 digits"],
    ],
  },
  url: {
    valid: ["https://shop.example/cart?x=1", "http://localhost:8080/"],
    invalid: [
      ["javascript:alert(1)", "http(s) URL"],
      ["not a url", "http(s) URL"],
      [`https://x.example/${"a".repeat(260)}`, "at most 255"],
    ],
  },
  email: {
    valid: ["chris@example.com", " Chris@Example.com "],
    invalid: [
      ["chris@", "expected an email address"],
      [{}, "expected an email address"],
    ],
  },
  single_select: { valid: ["Gold"], invalid: [[["Gold"], "expected a string"]] },
  multi_select: {
    valid: [["value 1", "value 2"], []],
    invalid: [
      ["value 1", "expected an array of strings"],
      [[1], "expected a string"],
      [Array(101).fill("v"), "at most 100"],
    ],
  },
  json: {
    valid: [[{ item_id: "12345", item_name: "Laminate desk", price: 1000 }], { a: { b: [1] } }],
    invalid: [
      ["{}", "expected a JSON object or array"],
      [3, "expected a JSON object or array"],
    ],
  },
  place: {
    valid: [{ name: "Sydney" }],
    invalid: [
      ["Sydney", "expected a place"],
      [{ name: "Sydney", lat: 1 }, "expected a place"],
    ],
  },
};

describe("Ortto field kinds", () => {
  for (const [kind, { valid, invalid }] of Object.entries(cases)) {
    describe(kind, () => {
      it.each(valid.map((v) => [JSON.stringify(v).slice(0, 40), v]))("accepts %s", (_label, value) => {
        expect(valueSchema(kind as FieldKind).safeParse(value).success).toBe(true);
      });
      it.each(invalid.map(([v, m]) => [JSON.stringify(v)?.slice(0, 40), v, m]))("refuses %s", (_label, value, message) => {
        const result = valueSchema(kind as FieldKind).safeParse(value);
        expect(result.success).toBe(false);
        expect(result.error?.issues.map((i) => i.message).join(" | ")).toContain(message);
      });
    });
  }

  it("narrows a single select to its options", () => {
    const schema = valueSchema("single_select", ["standard", "express"]);
    expect(schema.safeParse("express").success).toBe(true);
    expect(schema.safeParse("drone").error?.issues[0]?.message).toBe("expected one of: standard, express");
  });

  it("narrows a multi select to its options", () => {
    const schema = valueSchema("multi_select", ["a", "b"]);
    expect(schema.safeParse(["a", "b"]).success).toBe(true);
    expect(schema.safeParse(["a", "c"]).error?.issues[0]?.message).toBe("expected values from: a, b");
  });
});

describe("isDateTime, the hot path's date-time check", () => {
  it("accepts exactly the strings isoDateTime accepts: leap days, 24:00, offsets, lengths, digits of other scripts", () => {
    // A seeded generator: the same strings every run.
    let seed = 0x2400;
    const rnd = (n: number) => {
      seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) | 0;
      return (seed >>> 0) % n;
    };
    const pad = (n: number, width = 2) => String(n).padStart(width, "0");
    const seeds = [
      "2024-02-29T12:00:00Z",
      "2023-02-29T12:00:00Z",
      "2000-02-29T00:00:00+00:00",
      "1900-02-29T00:00:00Z",
      "2026-12-31T23:59:59.999-11:30",
      "2026-01-01T24:00:00Z",
      "2026-04-31T00:00:00Z",
      "2026-11-27T06:56:33+14:00",
    ];
    const swaps = ["0", "2", "9", "-", "T", "Z", ":", "+", ".", " ", "t", "z", "\n", "\u0662", "\uff12", "\u{1d7d0}"];
    const strings: unknown[] = [...seeds, 20260229, null, ["2024-02-29T12:00:00Z"]];
    for (let i = 0; i < 20_000; i++) {
      // Dates and times of every field's range and a little past it.
      strings.push(
        `${pad(rnd(10_000), 4)}-${pad(rnd(14))}-${pad(rnd(33))}T${pad(rnd(26))}:${pad(rnd(61))}:${pad(rnd(61))}${["", ".5", ".123456789"][rnd(3)]}${["Z", "+00:00", "-24:00", "+23:59", "z", ""][rnd(6)]}`,
      );
      // A valid one with a character replaced, added or removed.
      const chars = [...(seeds[rnd(seeds.length)] as string)];
      const at = rnd(chars.length + 1);
      const op = rnd(3);
      if (op === 0) chars[at] = swaps[rnd(swaps.length)] as string;
      else if (op === 1) chars.splice(at, 0, swaps[rnd(swaps.length)] as string);
      else chars.splice(at, 1);
      strings.push(chars.join(""));
    }
    const disagree = strings.filter((v) => isDateTime(v) !== isoDateTime.safeParse(v).success);
    expect(disagree).toEqual([]);
    expect(strings.filter(isDateTime).length).toBeGreaterThan(1000);
  });

  it("reads each one's time as Date.parse does: fractions cut to the ms, offsets, years before 100", () => {
    let seed = 0x90d;
    const rnd = (n: number) => {
      seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) | 0;
      return (seed >>> 0) % n;
    };
    const pad = (n: number, width = 2) => String(n).padStart(width, "0");
    const strings = [
      "0050-01-01T00:00:00Z",
      "0000-03-01T00:00:00.5+01:00",
      "2026-12-31T23:59:59.9999-23:59",
      "9999-12-31T23:59:59.999+00:00",
    ];
    for (let i = 0; i < 20_000; i++) {
      const year = [rnd(10_000), 2026, 1970 + rnd(100)][rnd(3)] as number;
      strings.push(
        `${pad(year, 4)}-${pad(1 + rnd(12))}-${pad(1 + rnd(28))}T${pad(rnd(24))}:${pad(rnd(60))}:${pad(rnd(60))}${["", ".5", ".05", ".123", ".9999", `.${"9".repeat(1 + rnd(25))}`][rnd(6)]}${["Z", `${"+-"[rnd(2)]}${pad(rnd(24))}:${pad(rnd(60))}`][rnd(2)]}`,
      );
    }
    const read = strings.filter(isDateTime);
    expect(read.length).toBe(strings.length);
    expect(read.filter((v) => dateTimeMs(v) !== Date.parse(v))).toEqual([]);
  });
});
