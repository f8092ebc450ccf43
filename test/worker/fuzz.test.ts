import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import catalogue from "../../relay.config.ts";
import { activitiesRequestSchema } from "../../shared/activities.ts";
import { expandShorthands } from "../../worker/intake/shorthand.ts";
import { emulator, eventually, loggedIn, postWith } from "./helpers.ts";

/**
 * Property-based tests of the HTTP handler: no input of any shape yields a 5xx, every
 * rejection is a 4xx JSON body that names a field, and nothing the schema refuses reaches
 * Ortto. The schema is the oracle: the relay forwards exactly what it accepts.
 */
const requestSchema = activitiesRequestSchema(catalogue);
/** The relay's pipeline: the snippet's shorthands expanded, then the schema. */
const schema = { safeParse: (value: unknown) => requestSchema.safeParse(expandShorthands(structuredClone(value))) };
// 6,500 cases a run: 3,000 arbitrary JSON, 500 arbitrary text, 3,000 mutated valid payloads (each
// valid one reaches the emulator; the limits count in isolate memory, so none waits on a Durable Object).
const RUNS = 3000;
const MUTATED_RUNS = 3000;

interface Answer {
  status: number;
  body: {
    code?: number;
    error?: string;
    details?: { path: string; message: string }[];
    activities?: unknown[];
    refused?: { index: number; path: string; message: string }[];
  };
}

async function send(raw: string): Promise<Answer> {
  const res = await postWith({}, raw);
  const text = await res.text();
  let body: Answer["body"];
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`answer ${res.status} is not JSON: ${text.slice(0, 200)}`);
  }
  return { status: res.status, body };
}

function expectNamedRejection(answer: Answer) {
  expect(answer.status).toBeGreaterThanOrEqual(400);
  expect(answer.status).toBeLessThan(500);
  expect(answer.body.code).toBe(answer.status);
  expect(answer.body.error).toMatch(/\S/);
  expect(answer.body.details?.length).toBeGreaterThan(0);
  for (const d of answer.body.details ?? []) {
    expect(d.path).toMatch(/\S/);
    expect(d.message).toMatch(/\S/);
  }
}

/** One of 300 visitors: few enough that their counters are reused (and reported to the ledger), many enough that none nears 50 events a day. */
const visitor = () => `visitor-${(Math.random() * 300) | 0}@example.com`;

const fresh = () => new Date(Date.now() - 60_000).toISOString();

/** A valid activity of each catalogue entry, to mutate. */
const validActivities = fc.constantFrom(
  // A new person each time, so Ortto's 50-a-day limit per contact never applies.
  () =>
    loggedIn({
      created: fresh(),
      key: crypto.randomUUID(),
      fields: { "str::first": "Chris", "str::email": visitor() },
    }),
  () => ({
    activity_id: "act:cm:placed-order",
    fields: { "str::email": visitor(), "str:cm:company": "Vandalay Industries" },
    attributes: {
      "int:cm:order-total": 24990,
      "dtz:cm:delivery-date": { year: 2026, month: 12, day: 24, timezone: "Australia/Sydney" },
      "sst:cm:categories": ["desks"],
      "obj:cm:items": [{ item_id: "1" }],
      "phn:cm:contact-phone": { c: "61", n: "401234567" },
    },
  }),
  () => ({
    activity_id: "act:cm:viewed-page",
    person_id: ((Math.random() * 300) | 0).toString(16).padStart(24, "0"),
    attributes: { "str:cm:page-url": "https://shop.example/" },
  }),
);

const anyKey = fc.oneof(
  fc.constantFrom(
    "activity_id",
    "fields",
    "attributes",
    "created",
    "key",
    "person_id",
    "location",
    "__proto__",
    "constructor",
    "str::email",
    "bol::p",
    "int::v",
    "str:cm:payment-plan",
    "bol:cm:account-owner",
    "dtz:cm:delivery-date",
    "obj:cm:items",
  ),
  fc.string({ maxLength: 20 }),
);

/** One edit somewhere in a valid activity: replace, delete or add a value, at the top or in fields/attributes. */
const mutation = fc.record({
  where: fc.constantFrom("activity", "fields", "attributes"),
  op: fc.constantFrom("set", "delete", "add"),
  key: anyKey,
  value: fc.jsonValue({ maxDepth: 3 }),
});

function mutate(activity: Record<string, unknown>, m: { where: string; op: string; key: string; value: unknown }) {
  const target = m.where === "activity" ? activity : (activity[m.where] as Record<string, unknown> | undefined);
  if (!target || typeof target !== "object") return activity;
  const keys = Object.keys(target);
  const key = m.op === "add" || keys.length === 0 ? m.key : (keys[m.key.length % keys.length] as string);
  if (m.op === "delete") delete target[key];
  else Object.defineProperty(target, key, { value: m.value, enumerable: true, writable: true, configurable: true });
  return activity;
}

describe("property: the relay never answers 5xx and forwards only what the schema accepts", () => {
  beforeAll(async () => {
    await emulator.reset();
  });

  it(`answers arbitrary JSON bodies with 2xx or a named 4xx (${RUNS} cases)`, async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue(), fc.record({ activities: fc.array(fc.jsonValue(), { maxLength: 5 }) })), async (value) => {
        const answer = await send(JSON.stringify(value));
        if (schema.safeParse(value).success) {
          expect(answer.status).toBe(200);
          accepted++;
        } else expectNamedRejection(answer);
      }),
      { numRuns: RUNS },
    );
    expect(accepted).toBe(0); // random JSON is never a valid, identified activity
  }, 120_000);

  it(`answers arbitrary text with a named 4xx (${RUNS / 6} cases)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 200 }), async (text) => {
        const answer = await send(text);
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          expect(answer.body.error).toBe("The body is not valid JSON");
        }
        if (parsed === undefined || !schema.safeParse(parsed).success) expectNamedRejection(answer);
      }),
      { numRuns: RUNS / 6 },
    );
  }, 120_000);

  it(`forwards a mutated valid payload only when the schema still accepts it (${MUTATED_RUNS} cases)`, async () => {
    // The isolate's first send waits for the pacer's permit; on a loaded machine it may not come
    // within 500 ms and the batch is queued (202), which this count of forwards would miss.
    let warmed = 0;
    const warm = () => {
      warmed++;
      return send(JSON.stringify({ activities: [loggedIn({ created: new Date().toISOString() })] }));
    };
    expect((await eventually(warm, (a) => a.status === 200)).status).toBe(200);
    // What went to the queue arrives before the count starts.
    await eventually(
      () => emulator.activities(),
      (a) => a.activities.length >= warmed,
    );
    await emulator.reset();
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(validActivities, fc.array(mutation, { maxLength: 3 })), { minLength: 1, maxLength: 3 }),
        async (cases) => {
          const payload = { activities: cases.map(([make, mutations]) => mutations.reduce(mutate, make() as Record<string, unknown>)) };
          const raw = JSON.stringify(payload);
          const valid = schema.safeParse(JSON.parse(raw)).success;
          const answer = await send(raw);
          // A valid payload is forwarded, unless a mutation made one contact send too much
          // (the per-contact limit answers a named 429 and forwards nothing). An invalid one is
          // refused, or taken in part: its valid activities forwarded and each refused one named.
          if (valid && answer.status !== 429) {
            expect(answer.status).toBe(200);
            expect(answer.body.activities).toHaveLength(payload.activities.length);
            accepted++;
          } else if (answer.status === 207) {
            expect(valid).toBe(false);
            const refused = answer.body.refused ?? [];
            expect(refused.length).toBeGreaterThan(0);
            for (const r of refused) {
              expect(r.path).toMatch(/\S/);
              expect(r.message).toMatch(/\S/);
            }
            expect(answer.body.activities).toHaveLength(payload.activities.length - refused.length);
            accepted++;
          } else expectNamedRejection(answer);
        },
      ),
      { numRuns: MUTATED_RUNS },
    );
    // Everything Ortto received was accepted by the relay: one upstream request per accepted payload.
    expect((await emulator.activities()).requests).toBe(accepted);
    expect(accepted).toBeGreaterThan(MUTATED_RUNS / 20);
    for (const request of await emulator.requests()) expect(schema.safeParse(request.body).success).toBe(true);
  }, 180_000);
});
