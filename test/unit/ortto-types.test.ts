import { describe, expect, it } from "vitest";
import type { FieldKind } from "../../shared/field-ids.ts";
import { valueSchema } from "../../shared/ortto-types.ts";

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
