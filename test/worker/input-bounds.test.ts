import fc from "fast-check";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { canonicalTimeZone, isTimeZone } from "../../shared/ortto-types.ts";
import { emulator, loggedIn, post, postWith } from "./helpers.ts";

/** A value nested `depth` levels deep, built without recursion. */
function nested(depth: number, leaf: unknown = 1): unknown {
  let value: unknown = leaf;
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { a: value };
  return value;
}

/** The JSON text of a value nested `depth` levels deep (JSON.stringify would overflow the test's own stack). */
const nestedText = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;

const order = (attributes: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  activities: [
    {
      activity_id: "act:cm:placed-order",
      key: `o-${crypto.randomUUID()}`,
      created: new Date().toISOString(),
      fields: { "str::email": "bounds@example.com" },
      attributes,
      ...extra,
    },
  ],
});

interface Refusal {
  code: number;
  error: string;
  details?: { path: string; message: string }[];
}

beforeEach(async () => {
  await emulator.reset();
});

describe("deep and large input", () => {
  it("refuses a json attribute nested 5,000 deep with a 400 naming the attribute and the rule, never a 500", async () => {
    const raw = JSON.stringify(order({ "obj:cm:items": "DEEP" })).replace('"DEEP"', nestedText(5000));
    const res = await post(raw);
    expect(res.status).toBe(400);
    const body = (await res.json()) as Refusal;
    expect(body.details?.[0]?.path).toBe("activities.0.attributes.obj:cm:items");
    expect(body.details?.[0]?.message).toMatch(/levels of nesting/);
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("refuses a location nested 50,000 deep with a 400 naming location, never a 500", async () => {
    const raw = JSON.stringify(order({}, { location: "DEEP" })).replace('"DEEP"', nestedText(50_000));
    expect(raw.length).toBeLessThan(400_000);
    const res = await post(raw);
    expect(res.status).toBe(400);
    const body = (await res.json()) as Refusal;
    expect(body.details?.[0]?.path).toBe("activities.0.location");
    expect(body.details?.[0]?.message).toMatch(/levels of nesting/);
  });

  it.each([
    ["beside the activities", (deep: string) => `{"activities":[${JSON.stringify(loggedIn())}],"extra":${deep}}`],
    ["as the activities", (deep: string) => `{"activities":${deep}}`],
    ["as an activity", (deep: string) => `{"activities":[${deep}]}`],
    ["as merge_by", (deep: string) => `{"merge_by":${deep},"activities":[${JSON.stringify(loggedIn())}]}`],
    ["as a person field", (deep: string) => JSON.stringify({ activities: [loggedIn()] }).replace('"Chris"', deep)],
    [
      "as a friendly attribute",
      (deep: string) => `{"activities":[{"activity_id":"placed-order","fields":{"email":"d@example.com"},"attributes":{"items":${deep}}}]}`,
    ],
  ])("answers a value nested 50,000 deep %s with a 4xx, never a 5xx", async (_where, body) => {
    const res = await post(body(nestedText(50_000)));
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(((await res.json()) as Refusal).details?.length).toBeGreaterThan(0);
  });

  it.each([
    ["one unknown attribute named with 200,000 characters", () => JSON.stringify(order({ [`str:cm:${"a".repeat(200_000)}`]: "v" }))],
    [
      "40 unknown attributes named with 20,000 characters each",
      () => JSON.stringify(order(Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`str:cm:${i}${"a".repeat(20_000)}`, "v"])))),
    ],
    [
      "5,000 unknown attributes",
      () => JSON.stringify(order(Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`str:cm:k${i}`, "v"])))),
    ],
  ])("refuses %s with a 400 smaller than the request, never echoing it whole", async (_name, body) => {
    const raw = body();
    const res = await post(raw);
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(text.length).toBeLessThan(Math.min(raw.length, 40_000));
    const refusal = JSON.parse(text) as Refusal;
    expect(refusal.details?.[0]?.path).toMatch(/^activities\.0\.attributes\.str:cm:/);
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("forwards a json attribute nested 30 deep as written", async () => {
    expect((await post(order({ "obj:cm:items": nested(30) }))).status).toBe(200);
    expect((await emulator.requests())[0]?.body.activities?.[0]?.attributes?.["obj:cm:items"]).toEqual(nested(30));
  });

  it("answers every deep or wide value with a 2xx or a 4xx, never a 5xx", { timeout: 60_000 }, async () => {
    // JSON text, so that values deeper than JSON.stringify can take are generated too.
    const deepOrWide = fc.oneof(
      fc.integer({ min: 1, max: 60_000 }).map(nestedText),
      fc.integer({ min: 1, max: 60_000 }).map((depth) => `${"[".repeat(depth)}${"]".repeat(depth)}`),
      fc
        .integer({ min: 1, max: 5000 })
        .map((width) => JSON.stringify(Object.fromEntries(Array.from({ length: width }, (_, i) => [`k${i}`, i])))),
      fc.integer({ min: 1, max: 5000 }).map((width) => JSON.stringify(Array.from({ length: width }, () => nested(3)))),
      fc.jsonValue({ depthSize: "large", maxDepth: 60 }).map((v) => JSON.stringify(v) ?? "null"),
    );
    const where = fc.constantFrom("attribute", "location", "field", "top");
    await fc.assert(
      fc.asyncProperty(deepOrWide, where, async (value, at) => {
        const template =
          at === "attribute"
            ? order({ "obj:cm:items": "VALUE" })
            : at === "location"
              ? order({}, { location: "VALUE" })
              : at === "field"
                ? order({}, { fields: { "str::email": "bounds@example.com", "str::first": "VALUE" } })
                : { activities: [loggedIn()], extra: "VALUE" };
        const res = await postWith(
          {},
          JSON.stringify(template).replace('"VALUE"', () => value),
        );
        expect(res.status, (await res.clone().text()).slice(0, 200)).toBeLessThan(500);
        if (res.status >= 400) expect(((await res.json()) as Refusal).details?.length).toBeGreaterThan(0);
      }),
      { numRuns: 60 },
    );
  });
});

describe("time zones", () => {
  it("forwards Asia/Kolkata and Europe/Kyiv as written, not as ICU's Asia/Calcutta and Europe/Kiev", async () => {
    for (const timezone of ["Asia/Kolkata", "Europe/Kyiv", "Australia/Sydney"]) {
      await emulator.reset();
      const res = await post(order({ "dtz:cm:delivery-date": { year: 2026, month: 3, day: 4, timezone } }));
      expect(res.status).toBe(200);
      expect((await emulator.requests())[0]?.body.activities?.[0]?.attributes?.["dtz:cm:delivery-date"]).toMatchObject({ timezone });
    }
  });

  it("writes a zone that differs from the tz database's only by case in the database's case", async () => {
    expect((await post(order({ "dtz:cm:delivery-date": { year: 2026, month: 3, day: 4, timezone: "australia/sydney" } }))).status).toBe(
      200,
    );
    expect((await emulator.requests())[0]?.body.activities?.[0]?.attributes?.["dtz:cm:delivery-date"]).toMatchObject({
      timezone: "Australia/Sydney",
    });
  });

  it("never forwards an alias in a case the tz database does not have (asia/kolkata, us/eastern, EUROPE/KYIV)", async () => {
    for (const timezone of ["asia/kolkata", "us/eastern", "EUROPE/KYIV"]) {
      await emulator.reset();
      expect((await post(order({ "dtz:cm:delivery-date": { year: 2026, month: 3, day: 4, timezone } }))).status).toBe(200);
      const date = (await emulator.requests())[0]?.body.activities?.[0]?.attributes?.["dtz:cm:delivery-date"] as
        | { timezone: string }
        | undefined;
      const forwarded = date?.timezone ?? "";
      // The same zone, in a spelling of the database: each part starts with a capital.
      expect(canonicalTimeZone(forwarded)).toBe(canonicalTimeZone(timezone));
      expect(forwarded).toMatch(/^[A-Z][^/]*(\/[A-Z][^/]*)*$/);
      expect(forwarded).not.toBe(timezone);
    }
  });

  it("refuses a 1 MB timezone with a 400 without resolving or caching it", async () => {
    const spy = vi.spyOn(Intl, "DateTimeFormat");
    const res = await post(order({ "dtz:cm:delivery-date": { year: 2026, month: 3, day: 4, timezone: `A${"x".repeat(1_000_000)}` } }));
    expect(res.status).toBe(400);
    expect(((await res.json()) as Refusal).details?.[0]?.path).toBe("activities.0.attributes.dtz:cm:delivery-date.timezone");
    expect(isTimeZone(`A${"x".repeat(65)}`)).toBe(false);
    expect(canonicalTimeZone(`A${"x".repeat(200)}`)).toBeUndefined();
    // No zone this long was ever handed to Intl, so none entered the cache.
    expect(spy.mock.calls.filter(([, options]) => (options?.timeZone?.length ?? 0) > 64)).toHaveLength(0);
    spy.mockRestore();
  });
});

describe("a json attribute's own __proto__ key", () => {
  it("forwards it as written, never dropping it", async () => {
    const raw = JSON.stringify(order({ "obj:cm:items": { placeholder: 1, b: 2 } })).replace('"placeholder":1', '"__proto__":{"a":1}');
    expect((await post(raw)).status).toBe(200);
    const forwarded = (await emulator.requests())[0]?.body.activities?.[0]?.attributes?.["obj:cm:items"] as Record<string, unknown>;
    expect(Object.hasOwn(forwarded, "__proto__")).toBe(true);
    expect(Object.getOwnPropertyDescriptor(forwarded, "__proto__")?.value).toEqual({ a: 1 });
    expect(forwarded.b).toBe(2);
  });
});

describe("the relay's own keys", () => {
  it("keeps 40 concurrent identical events without key or created as 40 activities", async () => {
    const body = { activities: [loggedIn({ fields: { "str::email": "same@example.com" } })] };
    const answers = await Promise.all(Array.from({ length: 40 }, () => post(body)));
    expect(answers.every((r) => r.status === 200)).toBe(true);
    const { activities, duplicates } = await emulator.activities();
    expect(activities).toHaveLength(40);
    expect(duplicates).toBe(0);
    expect(new Set(activities.map((a) => a.key)).size).toBe(40);
  });
});
