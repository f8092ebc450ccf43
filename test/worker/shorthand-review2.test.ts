/**
 * Adversarial review of the relay's side of the snippet's byte savings (worker/activities/shorthand.ts):
 * `created` in ms and the 255-character cut of the page-view attributes.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { emulator, post } from "./helpers.ts";

beforeEach(async () => {
  await emulator.reset();
});

describe("review 2: the page-view cut", () => {
  /**
   * FINDING (low): `value.slice(0, 255)` cuts UTF-16 units, so a title whose 255th unit is the first
   * half of a surrogate pair (an emoji, a CJK extension character) reaches Ortto with a lone
   * surrogate: JSON carries it as "\ud83d", which Ortto stores as U+FFFD or refuses as invalid UTF-8.
   * Fix: cut one unit shorter when the last kept unit is a high surrogate (or cut by code points).
   */
  it("never leaves half of a surrogate pair at the end of a cut page title", async () => {
    const title = `${"a".repeat(254)}😀 and more`;
    const res = await post({
      activities: [{ activity_id: "viewed-page", fields: { email: "pv-emoji@example.com" }, attributes: { "page-title": title } }],
    });
    expect(res.status).toBe(200);
    const [activity] = (await emulator.requests())[0]?.body.activities ?? [];
    const cut = activity?.attributes?.["str:cm:page-title"] as string;
    expect(cut.length).toBeLessThanOrEqual(255);
    expect(cut.isWellFormed()).toBe(true);
  });
});

describe("review 2: created in ms, strictly", () => {
  /**
   * FINDING (low): a `created` in ms that is not an integer (1.5 ms, 1e12 + 0.999) is not a time the
   * snippet ever sends; the relay truncates it silently (`new Date(x)`), so two different values
   * become the same `created`. The shorthand promises "a number that is no date is left for the
   * schema"; a fraction of a ms should be refused with the field named, like any other bad `created`.
   */
  it("refuses a created in ms that is not an integer, naming the field (a 400, never a 500)", async () => {
    const ms = Date.now() - 60_000 + 0.5;
    const res = await post({
      activities: [{ activity_id: "logged-in", key: "k-frac", created: ms, fields: { email: "frac@example.com" } }],
    });
    expect(res.status).toBe(400);
    const answer = (await res.json()) as { details: { path: string }[] };
    expect(answer.details.map((d) => d.path)).toContain("activities.0.created");
    expect(await emulator.requests()).toEqual([]);
  });

  /** HELD: out-of-range numbers, negative, far past, numeric strings: 400 naming created, never a 500. */
  it("refuses odd created values with a 400 that names created", async () => {
    for (const created of [
      -1,
      0,
      8.64e15,
      -8.64e15,
      8.64e15 + 1,
      1e21,
      Number.MAX_SAFE_INTEGER,
      `${Date.now()}`,
      Date.now() - 91 * 86_400_000,
    ]) {
      const res = await post({ activities: [{ activity_id: "logged-in", key: "k-odd", created, fields: { email: "odd@example.com" } }] });
      expect([created, res.status]).toEqual([created, 400]);
      const answer = (await res.json()) as { details: { path: string; message: string }[] };
      expect(answer.details.map((d) => d.path)).toContain("activities.0.created");
    }
    expect(await emulator.requests()).toEqual([]);
  });
});
