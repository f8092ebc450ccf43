import { describe, expect, it } from "vitest";
import catalogue from "../../relay.config.ts";
import { activitiesRequestSchema, describeIssue } from "../../shared/activities.ts";
import { defineCatalogue } from "../../shared/catalogue.ts";
import { prefixOf } from "../../shared/field-ids.ts";
import { trackingPlan } from "../../shared/plan.ts";
import { fillFromRequest } from "../../worker/intake/edge.ts";
import { expandShorthands } from "../../worker/intake/shorthand.ts";

describe("defineCatalogue", () => {
  it("accepts the default catalogue and resolves built-in person fields to their kinds", () => {
    expect(catalogue.personFields["str::email"]).toBe("email");
    expect(catalogue.personFields["phn::phone"]).toBe("phone");
    expect(catalogue.personFields["str:cm:company"]).toMatchObject({ kind: "text" });
    expect(Object.keys(catalogue.activities)).toEqual(expect.arrayContaining(["act:cm:logged-in", "act:cm:placed-order"]));
  });

  it("declares one attribute of every kind in the demo activity", () => {
    const kinds = Object.values(catalogue.activities["act:cm:placed-order"]?.attributes ?? {}).map((s) =>
      typeof s === "string" ? s : s.kind,
    );
    for (const kind of [
      "text",
      "long_text",
      "integer",
      "decimal",
      "currency",
      "date",
      "datetime",
      "boolean",
      "phone",
      "url",
      "single_select",
      "multi_select",
      "json",
    ]) {
      expect(kinds).toContain(kind);
    }
  });

  it("refuses an attribute whose id prefix does not fit its kind", () => {
    expect(() =>
      defineCatalogue({ activities: { "act:cm:x": { name: "X", attributes: { "str:cm:total": "currency" } } }, personFields: {} }),
    ).toThrow(/a currency field travels as int/);
  });

  it("refuses consent fields unless allowConsentFields is set", () => {
    expect(() => defineCatalogue({ activities: {}, personFields: { "bol::p": true } })).toThrow(/consent fields are not browser-settable/);
    expect(defineCatalogue({ activities: {}, personFields: { "bol::p": true }, allowConsentFields: true }).personFields["bol::p"]).toBe(
      "boolean",
    );
  });

  it("refuses a custom person field without a kind, and a malformed activity id", () => {
    expect(() => defineCatalogue({ activities: {}, personFields: { "str:cm:company": true } })).toThrow(/needs its kind/);
    expect(() => defineCatalogue({ activities: { "logged-in": { name: "X", attributes: {} } }, personFields: {} })).toThrow(
      /act:cm:logged-in/,
    );
  });
});

describe("the request schema", () => {
  const many = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`int:cm:n${i}`, "integer" as const]));
  const wide = defineCatalogue({ activities: { "act:cm:wide": { name: "Wide", attributes: many } }, personFields: { "str::email": true } });
  const schema = activitiesRequestSchema(wide);

  it("refuses more than 15 attributes on one activity (Ortto's limit)", () => {
    const attributes = Object.fromEntries(Object.keys(many).map((k, i) => [k, i]));
    const result = schema.safeParse({ activities: [{ activity_id: "act:cm:wide", fields: { "str::email": "a@b.co" }, attributes }] });
    expect(result.error?.issues.map(describeIssue)).toEqual([
      { path: "activities.0.attributes", message: "expected at most 15 attributes (Ortto's limit)" },
    ]);
  });

  it("accepts a person_id instead of identifying fields", () => {
    expect(schema.safeParse({ activities: [{ activity_id: "act:cm:wide", person_id: "00600e153df0a3b67ce60f00" }] }).success).toBe(true);
  });

  it("accepts merge_by of browser-settable person fields only", () => {
    const activities = [{ activity_id: "act:cm:wide", person_id: "006" }];
    expect(schema.safeParse({ merge_by: ["str::email"], activities }).success).toBe(true);
    expect(schema.safeParse({ merge_by: ["bol::p"], activities }).success).toBe(false);
  });
});

describe("field id helpers", () => {
  it("reads a field id's type prefix", () => {
    expect(prefixOf("str:cm:payment-plan")).toBe("str");
    expect(prefixOf("int::v")).toBe("int");
    expect(prefixOf("xyz::v")).toBeUndefined();
  });
});

describe("a catalogue and the snippet's automatic page views", () => {
  it("refuses at build a catalogue that makes the page-view attributes relay-filled, or lets the snippet's page view pass", () => {
    let catalogue: ReturnType<typeof defineCatalogue> | undefined;
    try {
      // A natural wish: the relay, not the page, says which page was viewed.
      catalogue = defineCatalogue({
        activities: {
          "act:cm:viewed-page": {
            name: "Viewed page",
            attributes: { "str:cm:page-url": { kind: "url", source: "page_url" }, "str:cm:page-title": "text" },
          },
        },
        personFields: { "str::email": true },
      });
    } catch {
      return; // refused at build: fine
    }
    // What the snippet sends for data-pageviews (snippet/src/core.ts): page-url, page-title, referrer.
    const body = expandShorthands({
      activities: [
        {
          activity_id: "act:cm:viewed-page",
          fields: { email: "chris@example.com" },
          attributes: { "page-url": "https://shop.example/pricing", "page-title": "Pricing" },
        },
      ],
    });
    const request = new Request("https://relay.test/v1/activities/create", {
      headers: { Origin: "https://shop.example", Referer: "https://shop.example/pricing" },
    });
    expect(fillFromRequest(body, trackingPlan(catalogue), request)).toEqual([]);
  });
});
