import { describe, expect, it } from "vitest";
import { originMatcher } from "../../worker/origins.ts";
import { chunkActivities } from "../../worker/upstream.ts";

describe("ALLOWED_ORIGINS", () => {
  const allowed = originMatcher(" https://shop.example , https://*.brand.example,http://localhost:8080/ ");
  it.each([
    ["https://shop.example", true],
    ["HTTPS://SHOP.EXAMPLE", true],
    ["http://localhost:8080", true],
    ["https://www.brand.example", true],
    ["https://a.b.brand.example", true],
    ["https://brand.example", false],
    ["https://evilbrand.example", false],
    ["http://www.brand.example", false],
    ["https://shop.example.evil.test", false],
    ["https://shop.example:8443", false],
    ["null", false],
    ["", false],
  ])("%s → %s", (origin, expected) => {
    expect(allowed(origin)).toBe(expected);
  });
  it("never allows every origin, even when told *", () => {
    expect(originMatcher("*")("https://anything.example")).toBe(false);
  });
});

describe("chunkActivities", () => {
  const activity = { activity_id: "act:cm:logged-in", person_id: "0060" };
  it("splits more than 100 activities into requests of at most 100", () => {
    expect(chunkActivities(Array(250).fill(activity)).map((c) => c.length)).toEqual([100, 100, 50]);
  });
  it("splits by size before Ortto's 2 MB limit", () => {
    const big = { ...activity, attributes: { "txt:cm:x": "x".repeat(4000) } };
    const chunks = chunkActivities(Array(30).fill(big), 40_000);
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) expect(JSON.stringify(chunk).length).toBeLessThanOrEqual(40_000);
    expect(chunks.flat()).toHaveLength(30);
  });
});
