import { beforeEach, describe, expect, it } from "vitest";
import { call, create, createJson, daysAgo, HEX24, KEY, loggedIn, resetEmulator, stored } from "./helpers.ts";

beforeEach(async () => {
  await resetEmulator();
});

describe("POST /v1/activities/create: the request", () => {
  it("answers 401 in Ortto's envelope without an X-Api-Key, and stores nothing", async () => {
    const res = await create({ activities: [loggedIn()] }, { "Content-Type": "application/json" });
    expect(res.status).toBe(401);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ code: 401, error: expect.any(String) });
    expect(body.request_id).toMatch(/^[0-9a-f-]{36}$/);
    expect((await stored()).activities).toEqual([]);
  });

  it("answers 401 for an empty X-Api-Key", async () => {
    expect((await create({ activities: [loggedIn()] }, { "X-Api-Key": " " })).status).toBe(401);
  });

  it("answers 400 for a body that is not JSON", async () => {
    const { status, body } = await createJson("activities=1");
    expect(status).toBe(400);
    expect(body).toMatchObject({ code: 400, error: "Request body is not valid JSON" });
  });

  it("answers 413 for a body over 2 MB", async () => {
    const big = JSON.stringify({ activities: [loggedIn()], padding: "x".repeat(2 * 1024 * 1024) });
    const res = await create(big);
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ code: 413 });
  });

  it("answers 400 for a request without activities", async () => {
    expect((await createJson({ activities: [] })).status).toBe(400);
    expect((await createJson({ nothing: true })).status).toBe(400);
  });

  it("answers 400 for more than 100 activities, and stores none of them", async () => {
    const activities = Array.from({ length: 101 }, (_, i) => loggedIn({ fields: { "str::email": `p${i}@example.com` } }));
    const { status, body } = await createJson({ activities });
    expect(status).toBe(400);
    expect(body.error).toMatch(/100/);
    expect((await stored()).activities).toEqual([]);
  });

  it("accepts exactly 100 activities", async () => {
    const activities = Array.from({ length: 100 }, (_, i) => loggedIn({ fields: { "str::email": `p${i}@example.com` } }));
    const { status, body } = await createJson({ activities });
    expect(status).toBe(200);
    expect(body.activities).toHaveLength(100);
  });

  it("answers 400 for an unknown activity id", async () => {
    const { status, body } = await createJson({ activities: [loggedIn({ activity_id: "act:cm:signed-up" })] });
    expect(status).toBe(400);
    expect(body.error).toBe("Unknown activity act:cm:signed-up");
  });

  it("answers 404 in the envelope for a route Ortto's emulator does not have", async () => {
    const res = await call("/v1/person/merge", { method: "POST" });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 404 });
  });
});

describe("POST /v1/activities/create: people", () => {
  it("ingests the seed's first example and creates the person", async () => {
    const { status, body } = await createJson({ activities: [loggedIn()] });
    expect(status).toBe(200);
    const [result] = body.activities ?? [];
    expect(result).toEqual({
      person_id: expect.stringMatching(HEX24),
      person_status: "created",
      activity_id: expect.stringMatching(HEX24),
      status: "ingested",
    });

    const { activities, people } = await stored();
    expect(activities).toHaveLength(1);
    expect(activities[0]).toMatchObject({
      id: result?.activity_id,
      activity_id: "act:cm:logged-in",
      person_id: result?.person_id,
      fields: loggedIn().fields,
      attributes: loggedIn().attributes,
      location: { source_ip: "203.0.113.7" },
      api_key: KEY,
      async: false,
    });
    expect(Date.parse(activities[0]?.received_at ?? "")).toBeGreaterThan(Date.now() - 60_000);
    expect(people).toHaveLength(1);
  });

  it("merges into the same person the second time the email is seen, and updates their fields", async () => {
    const first = await createJson({ activities: [loggedIn()] });
    const second = await createJson({
      activities: [loggedIn({ fields: { "str::email": "Chris@Example.com", "str::first": "Christopher", "str:cm:company": "Vandalay" } })],
    });
    expect(second.body.activities?.[0]).toMatchObject({
      person_status: "merged",
      person_id: first.body.activities?.[0]?.person_id,
      status: "ingested",
    });
    const { people, activities } = await stored();
    expect(people).toHaveLength(1);
    expect(people[0]?.fields).toMatchObject({ "str::first": "Christopher", "str::last": "Smith", "str:cm:company": "Vandalay" });
    expect(activities).toHaveLength(2);
  });

  it("finds a person again by external id or phone", async () => {
    const a = await createJson({ activities: [loggedIn({ fields: { "str::ei": "user-42", "phn::phone": { c: "61", n: "401234567" } } })] });
    const byEi = await createJson({ activities: [loggedIn({ fields: { "str::ei": "user-42" } })] });
    const byPhone = await createJson({ activities: [loggedIn({ fields: { "phn::phone": { phone: "+61401234567" } } })] });
    const id = a.body.activities?.[0]?.person_id;
    expect(byEi.body.activities?.[0]).toMatchObject({ person_status: "merged", person_id: id });
    expect(byPhone.body.activities?.[0]).toMatchObject({ person_status: "merged", person_id: id });
  });

  it("matches a known person_id, and fails an unknown one", async () => {
    const first = await createJson({ activities: [loggedIn()] });
    const id = first.body.activities?.[0]?.person_id;
    const { body } = await createJson({
      activities: [loggedIn({ person_id: id, fields: {} }), loggedIn({ person_id: "0123456789abcdef01234567", fields: {} })],
    });
    expect(body.activities?.[0]).toMatchObject({ person_status: "matched", person_id: id, status: "ingested" });
    expect(body.activities?.[1]).toEqual({ person_status: "failed", status: "failed" });
  });

  it("fails an activity without an identifying field or person_id, but ingests the others", async () => {
    const { status, body } = await createJson({ activities: [loggedIn({ fields: { "str::first": "Anon" } }), loggedIn()] });
    expect(status).toBe(200);
    expect(body.activities?.[0]).toEqual({ person_status: "failed", status: "failed" });
    expect(body.activities?.[1]).toMatchObject({ person_status: "created", status: "ingested" });
    expect((await stored()).activities).toHaveLength(1);
  });

  it("fails the activity for a person field that does not exist, and says why in the request log", async () => {
    const { status, body } = await createJson({
      activities: [loggedIn({ fields: { "str::email": "chris@example.com", "str:cm:shoe-size": "9" } })],
    });
    expect(status).toBe(200);
    expect(body.activities?.[0]).toEqual({ person_status: "failed", status: "failed" });
    expect((await stored()).activities).toEqual([]);
    const [logged] = (await (await call("/_emulator/requests")).json()) as { failures?: string[] }[];
    expect(logged?.failures?.[0]).toMatch(/str:cm:shoe-size/);
  });

  it("fails the activity for a person field of the wrong type", async () => {
    const { body } = await createJson({ activities: [loggedIn({ fields: { "str::email": "not an email" } })] });
    expect(body.activities?.[0]).toEqual({ person_status: "failed", status: "failed" });
  });

  it("accepts Ortto's built-in and consent person fields that the catalogue does not list", async () => {
    const { body } = await createJson({
      activities: [
        loggedIn({
          fields: {
            "str::email": "chris@example.com",
            "bol::p": false,
            "str::u-ctx": "Unsubscribed via internal API",
            "geo::city": { name: "Sydney" },
          },
        }),
      ],
    });
    expect(body.activities?.[0]).toMatchObject({ person_status: "created", status: "ingested" });
  });
});

describe("POST /v1/activities/create: attributes", () => {
  it("answers 400 naming a mistyped attribute, and stores nothing from the request", async () => {
    const { status, body } = await createJson({
      activities: [loggedIn(), loggedIn({ attributes: { "bol:cm:account-owner": "yes" } })],
    });
    expect(status).toBe(400);
    expect(body.code).toBe(400);
    expect(body.error).toMatch(/bol:cm:account-owner/);
    expect(body.details?.[0]?.error).toMatch(/^activities\[1\]: .*bol:cm:account-owner/);
    expect((await stored()).activities).toEqual([]);
  });

  it("drops an unknown attribute silently", async () => {
    const { status, body } = await createJson({
      activities: [loggedIn({ attributes: { "str:cm:payment-plan": "Free plan", "str:cm:mood": "happy" } })],
    });
    expect(status).toBe(200);
    expect(body.activities?.[0]?.status).toBe("ingested");
    const [activity] = (await stored()).activities;
    expect(activity?.attributes).toEqual({ "str:cm:payment-plan": "Free plan" });
    expect(activity?.ignored_attributes).toEqual(["str:cm:mood"]);
  });

  it("accepts one attribute of every kind Ortto offers", async () => {
    const { status } = await createJson({
      activities: [
        {
          activity_id: "act:cm:placed-order",
          fields: { "str::email": "chris@example.com" },
          attributes: {
            "str:cm:order-number": "A-1001",
            "txt:cm:gift-message": "Happy birthday",
            "int:cm:item-count": 3,
            "int:cm:weight-kg": 64280,
            "int:cm:order-total": 24990,
            "dtz:cm:delivery-date": { year: 2026, month: 3, day: 4, timezone: "Australia/Sydney" },
            "tme:cm:placed-at": "2026-11-27T06:56:33Z",
            "bol:cm:first-order": true,
            "phn:cm:contact-phone": { c: "61", n: "401234567" },
            "str:cm:receipt-url": "https://shop.example/r/1001",
            "str:cm:shipping-method": "express",
            "sst:cm:categories": ["desks", "chairs"],
            "obj:cm:items": [{ item_id: "12345", item_name: "Laminate desk", price: 1000 }],
            "int::v": 24990,
          },
        },
      ],
    });
    expect(status).toBe(200);
  });

  it("answers 400 for a decimal sent as a fraction instead of × 1000", async () => {
    const { status, body } = await createJson({ activities: [loggedIn({ attributes: { "int::v": 15.3 } })] });
    expect(status).toBe(400);
    expect(body.error).toMatch(/int::v/);
  });
});

describe("POST /v1/activities/create: created, key and limits", () => {
  it("answers 400 'Created date is more than 90 days ago' for an old created date", async () => {
    const { status, body } = await createJson({ activities: [loggedIn(), loggedIn({ created: daysAgo(91) })] });
    expect(status).toBe(400);
    expect(body.error).toBe("Created date is more than 90 days ago");
    expect((await stored()).activities).toEqual([]);
  });

  it("back-dates an activity within 90 days", async () => {
    const created = daysAgo(89);
    expect((await createJson({ activities: [loggedIn({ created })] })).status).toBe(200);
    expect((await stored()).activities[0]?.created).toBe(created);
  });

  it("merges a re-send with the same key and created into the stored activity", async () => {
    const created = daysAgo(1);
    const first = await createJson({ activities: [loggedIn({ key: "125432", created })] });
    // The same instant written with another offset is the same created date.
    const again = await createJson({ activities: [loggedIn({ key: "125432", created: created.replace("Z", "+00:00") })] });
    expect(again.body.activities?.[0]).toMatchObject({ status: "ingested", activity_id: first.body.activities?.[0]?.activity_id });
    const inspect = await stored();
    expect(inspect.activities).toHaveLength(1);
    expect(inspect.duplicates).toBe(1);
    expect(inspect.requests).toBe(2);
    const html = await (await call("/")).text();
    expect(html).toContain("1 person · 1 activity · 1 duplicate merged · 2 create requests");
  });

  it("stores the same key with another created date as a new activity", async () => {
    await createJson({ activities: [loggedIn({ key: "k1", created: daysAgo(1) }), loggedIn({ key: "k1", created: daysAgo(2) })] });
    const inspect = await stored();
    expect(inspect.activities).toHaveLength(2);
    expect(inspect.duplicates).toBe(0);
  });

  it("fails the 51st event of one activity for one person within 24 hours", async () => {
    const activities = Array.from({ length: 51 }, () => loggedIn());
    const { status, body } = await createJson({ activities });
    expect(status).toBe(200);
    expect(body.activities?.slice(0, 50).every((a) => a.status === "ingested")).toBe(true);
    expect(body.activities?.[50]).toEqual({ person_id: body.activities?.[0]?.person_id, person_status: "merged", status: "failed" });

    // Another activity, or another person, still has room.
    const other = await createJson({
      activities: [
        { ...loggedIn(), activity_id: "act:cm:viewed-page", attributes: {} },
        loggedIn({ fields: { "str::email": "alex@example.com" } }),
      ],
    });
    expect(other.body.activities?.map((a) => a.status)).toEqual(["ingested", "ingested"]);
    expect((await stored()).activities).toHaveLength(52);
  });

  it("answers queued for async requests, and still stores the activities", async () => {
    const { status, body } = await createJson({ async: true, activities: [loggedIn(), loggedIn()] });
    expect(status).toBe(200);
    expect(body).toEqual({
      activities: [
        { status: "queued", person_status: "queued" },
        { status: "queued", person_status: "queued" },
      ],
    });
    const { activities } = await stored();
    expect(activities).toHaveLength(2);
    expect(activities[0]?.async).toBe(true);
  });

  it("answers in request order, as the seed's two-activity example shows", async () => {
    const { body } = await createJson({
      activities: [
        loggedIn({ fields: { "str::first": "Alex", "str::last": "Smith", "str::email": "alex@example.com" } }),
        loggedIn({
          location: {
            custom: {
              country_name: "USA",
              region_name: "NY",
              city_name: "New York",
              position_name: "Vandalay Industries",
              lat: 40.73061,
              lng: -73.935242,
            },
          },
        }),
      ],
    });
    const [alex, chris] = body.activities ?? [];
    expect(alex?.person_status).toBe("created");
    expect(chris?.person_status).toBe("created");
    expect(alex?.person_id).not.toBe(chris?.person_id);
    const { people } = await stored();
    expect(people.map((p) => p.fields["str::first"])).toEqual(["Alex", "Chris"]);
  });
});

describe("the inspection API", () => {
  it("logs each create request with lower-case headers, the parsed body and the answered status", async () => {
    await createJson({ activities: [loggedIn()] });
    await create("not json");
    const log = (await (await call("/_emulator/requests")).json()) as { headers: Record<string, string>; body: unknown; status: number }[];
    expect(log).toHaveLength(2);
    expect(log[0]).toMatchObject({
      headers: { "x-api-key": KEY, "content-type": "application/json" },
      body: { activities: [loggedIn()] },
      status: 200,
    });
    expect(log[1]).toMatchObject({ body: "not json", status: 400 });
  });

  it("keeps only the last 200 requests in the log but counts them all", async () => {
    // 201 requests, twenty at a time: the log's bound, not the order of arrival, is the subject.
    for (let i = 0; i < 201; i += 20) await Promise.all(Array.from({ length: Math.min(20, 201 - i) }, () => create({ activities: [] })));
    const log = (await (await call("/_emulator/requests")).json()) as unknown[];
    expect(log).toHaveLength(200);
    expect((await stored()).requests).toBe(201);
  }, 30_000);

  it("forgets people, activities, requests and counters on reset", async () => {
    await createJson({ activities: [loggedIn({ key: "a", created: daysAgo(1) })] });
    await resetEmulator();
    expect(await stored()).toEqual({ activities: [], requests: 0, duplicates: 0, people: [] });
    expect(await (await call("/_emulator/requests")).json()).toEqual([]);
    const { body } = await createJson({ activities: [loggedIn()] });
    expect(body.activities?.[0]?.person_status).toBe("created");
  });
});
