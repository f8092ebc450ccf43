import { describe, expect, it } from "vitest";
import { defineCatalogue } from "../../shared/catalogue.ts";
import { trackingPlan } from "../../shared/plan.ts";
import { fillFromRequest } from "../../worker/intake/edge.ts";
import { orttoDate } from "../../worker/intake/friendly.ts";
import { expandShorthands } from "../../worker/intake/shorthand.ts";

/** Adversarial review of the typed tracking plan: each test is a finding, and fails while the defect is there. */

describe("F8 (Low): a catalogue may make the snippet's page-view attributes relay-filled, and then every automatic page view is refused", () => {
  it("either the catalogue is refused at build, or the snippet's own page view passes", () => {
    let catalogue: ReturnType<typeof defineCatalogue> | undefined;
    try {
      // A natural use of the new feature: let the relay, not the page, say which page was viewed.
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

describe("F3 (Low): orttoDate moves year-0 instants to year 1", () => {
  it.each([
    ["0000-06-15T00:00:00Z", "UTC"],
    ["0000-12-31T23:59:59Z", "UTC"],
    ["0001-01-01T00:00:00Z", "America/Los_Angeles"],
    ["0001-01-01T03:00:00+05:00", "UTC"],
  ])("%s in %s is refused (year 0 is outside Ortto's 1–9999)", (value, zone) => {
    expect(() => orttoDate(value, zone)).toThrow(/years 1–9999/);
  });
});
