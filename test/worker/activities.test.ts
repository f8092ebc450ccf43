import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { sha256Hex } from "../../worker/hash.ts";
import worker from "../../worker/index.ts";
import { emulator, loggedIn, ORIGIN, post, postWith, RELAY } from "./helpers.ts";
import { open, SERVER_TOKEN } from "./people.ts";

beforeEach(async () => {
  await emulator.reset();
});

describe("POST /v1/activities/create forwards valid activities", () => {
  it("forwards the seed's example to Ortto with the relay's key and answers Ortto's per-activity results", async () => {
    const res = await post({ activities: [loggedIn()] }, { ip: "203.0.113.7" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { activities: { person_status: string; status: string }[] };
    expect(body.activities).toHaveLength(1);
    expect(body.activities[0]).toMatchObject({ person_status: "created", status: "ingested" });

    const [request] = await emulator.requests();
    expect(request?.headers["x-api-key"]).toBe("test-key-7f3a");
    expect(request?.headers["content-type"]).toContain("application/json");
    const [stored] = (await emulator.activities()).activities;
    expect(stored).toMatchObject({
      activity_id: "act:cm:logged-in",
      attributes: { "str:cm:payment-plan": "$100 starter plan", "bol:cm:account-owner": true, "int::v": 1530 },
      location: { source_ip: "203.0.113.7" },
    });
  });

  it("adds a key and a created time to activities that have none", async () => {
    const before = Date.now();
    await post({ activities: [loggedIn()] });
    const activity = (await emulator.requests())[0]?.body.activities?.[0];
    expect(activity?.key).toMatch(/^relay:[0-9a-f]{40}$/);
    expect(Date.parse(activity?.created ?? "")).toBeGreaterThanOrEqual(before - 1000);
  });

  it("keeps the key and created time the client set, so re-sends merge in Ortto", async () => {
    const created = new Date(Date.now() - 60_000).toISOString();
    const activity = loggedIn({ key: "evt-1", created });
    await post({ activities: [activity] });
    const res = await post({ activities: [activity] });
    expect(res.status).toBe(200);
    const sent = (await emulator.requests()).map((r) => r.body.activities?.[0]);
    expect(sent.map((a) => [a?.key, a?.created])).toEqual([
      ["evt-1", created],
      ["evt-1", created],
    ]);
    expect((await emulator.activities()).duplicates).toBe(1);
  });

  it("accepts an application/json body as well as text/plain", async () => {
    expect((await post({ activities: [loggedIn()] }, { contentType: "application/json" })).status).toBe(200);
    expect((await post({ activities: [loggedIn()] }, { contentType: "text/plain;charset=UTF-8" })).status).toBe(200);
  });

  it("ignores an X-Api-Key sent by the browser and uses its own", async () => {
    await post({ activities: [loggedIn()] }, { headers: { "X-Api-Key": "attacker-key" } });
    expect((await emulator.requests())[0]?.headers["x-api-key"]).toBe("test-key-7f3a");
  });

  it("replaces a client-sent location with the CF-Connecting-IP, never X-Forwarded-For", async () => {
    await post(
      { activities: [loggedIn({ location: { source_ip: "1.1.1.1" } })] },
      { ip: "198.51.100.4", headers: { "X-Forwarded-For": "9.9.9.9" } },
    );
    expect((await emulator.requests())[0]?.body.activities?.[0]?.location).toEqual({ source_ip: "198.51.100.4" });
  });

  it("with GEO_MODE=edge sends the city and country from request.cf instead of the IP", async () => {
    const cf = { country: "AU", region: "New South Wales", city: "Sydney", latitude: "-33.86", longitude: "151.20" };
    const res = await postWith({ GEO_MODE: "edge" }, { activities: [loggedIn()] }, { cf });
    expect(res.status).toBe(200);
    expect((await emulator.requests())[0]?.body.activities?.[0]?.location).toEqual({
      custom: { country_name: "AU", region_name: "New South Wales", city_name: "Sydney", lat: -33.86, lng: 151.2 },
    });
  });

  it("with GEO_MODE=off sends no location at all", async () => {
    await postWith({ GEO_MODE: "off" }, { activities: [loggedIn({ location: { source_ip: "1.1.1.1" } })] });
    expect((await emulator.requests())[0]?.body.activities?.[0]).not.toHaveProperty("location");
  });

  it("passes async: true through and answers Ortto's queued statuses", async () => {
    const res = await post({ async: true, activities: [loggedIn(), loggedIn()] });
    expect(await res.json()).toEqual({
      activities: [
        { status: "queued", person_status: "queued" },
        { status: "queued", person_status: "queued" },
      ],
    });
    expect((await emulator.requests())[0]?.body.async).toBe(true);
  });

  it("strips identity_token before forwarding", async () => {
    await post({ identity_token: "abc123", activities: [loggedIn()] });
    expect((await emulator.requests())[0]?.body).not.toHaveProperty("identity_token");
  });

  it("forwards a placed-order activity with one attribute of every Ortto type", async () => {
    const res = await post({
      activities: [
        {
          activity_id: "act:cm:placed-order",
          fields: { "str::email": "alex@example.com", "phn::phone": { c: "61", n: "401234567" } },
          attributes: {
            "str:cm:order-number": "A-1001",
            "txt:cm:gift-message": "x".repeat(3000),
            "int:cm:item-count": 3,
            "int:cm:weight-kg": 2500,
            "int:cm:order-total": 24990,
            "dtz:cm:delivery-date": { year: 2026, month: 12, day: 24, timezone: "Australia/Sydney" },
            "tme:cm:placed-at": new Date().toISOString(),
            "bol:cm:first-order": true,
            "phn:cm:contact-phone": { phone: "61401234567", parse_with_country_code: true },
            "str:cm:receipt-url": "https://shop.example/r/1001",
            "str:cm:shipping-method": "express",
            "sst:cm:categories": ["desks", "chairs"],
            "obj:cm:items": [{ item_id: "12345", item_name: "Laminate desk", price: 1000 }],
            "int::v": 24990,
          },
        },
      ],
    });
    expect(res.status).toBe(200);
    expect((await emulator.activities()).activities[0]?.attributes?.["sst:cm:categories"]).toEqual(["desks", "chairs"]);
  });
});

describe("POST /v1/activities/create when Ortto refuses or the relay is not configured", () => {
  it("passes Ortto's own 4xx back as a 4xx with its message", async () => {
    await emulator.faults({ failRate: 1, statuses: [400] });
    const res = await post({ activities: [loggedIn()] });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string };
    expect(body.error).toMatch(/^Ortto refused the activities: /);
  });

  it("answers 503 naming ORTTO_API_KEY when the key is not configured, and forwards nothing", async () => {
    const res = await postWith({ ORTTO_API_KEY: undefined }, { activities: [loggedIn()] });
    expect(res.status).toBe(503);
    const body = (await res.json()) as { error: string; details: { path: string }[] };
    expect(body.error).toContain("ORTTO_API_KEY");
    expect(body.details[0]?.path).toBe("ORTTO_API_KEY");
    expect(await emulator.requests()).toHaveLength(0);
  });
});

describe("logs", () => {
  /** An Analytics Engine dataset that cannot take a point. */
  const brokenDataset = {
    writeDataPoint: () => {
      throw new Error("dataset unavailable");
    },
  };

  it("writes one Analytics Engine point per POST, plain successes included, and none for other methods", async () => {
    // A recording dataset: Miniflare's Analytics Engine keeps no points to read back.
    const points: AnalyticsEngineDataPoint[] = [];
    const RELAY_EVENTS = { writeDataPoint: (point: AnalyticsEngineDataPoint) => void points.push(point) };
    const problems = { LOG_REQUESTS: "problems", RELAY_EVENTS };
    expect((await postWith(problems, { activities: [loggedIn()] })).status).toBe(200);
    expect((await postWith(problems, { activities: [{ ...loggedIn(), activity_id: "act:cm:no-such" }] })).status).toBe(400);
    await worker.fetch(new Request(`${RELAY}/healthz`), { ...env, RELAY_EVENTS });
    expect(points.map((p) => [p.blobs?.[0], p.blobs?.[2], p.doubles])).toEqual([
      ["forwarded", "200", [1, 1, 0]],
      ["rejected", "400", [0, 0, 0]],
    ]);
  });

  it("answers a plain success as usual when its Analytics Engine point cannot be written, and logs that", async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    try {
      expect((await postWith({ LOG_REQUESTS: "problems", RELAY_EVENTS: brokenDataset }, { activities: [loggedIn()] })).status).toBe(200);
    } finally {
      spy.mockRestore();
    }
    expect(lines.map((line) => JSON.parse(line))).toEqual([{ event: "data_point_failed", error: "Error: dataset unavailable" }]);
  });

  it("answers a refusal as usual when its Analytics Engine point cannot be written, and logs that beside its line", async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    try {
      const refused = await postWith(
        { LOG_REQUESTS: "problems", RELAY_EVENTS: brokenDataset },
        { activities: [{ ...loggedIn(), activity_id: "act:cm:no-such" }] },
      );
      expect(refused.status).toBe(400);
      // The line and the point come after the answer (here, without waitUntil, on their own).
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      spy.mockRestore();
    }
    const entries = lines.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line));
    expect(entries).toContainEqual({ event: "data_point_failed", error: "Error: dataset unavailable" });
    expect(entries.some((entry) => entry.status === 400)).toBe(true);
  });

  it("by default (LOG_REQUESTS=problems) writes no line for a plain success, and one for every other answer", async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    const ids: (string | null)[] = [];
    try {
      const problems = { LOG_REQUESTS: "problems" };
      const ok = await postWith(problems, { activities: [loggedIn()] });
      const refused = await postWith(problems, { activities: [{ ...loggedIn(), activity_id: "act:cm:no-such" }] });
      expect([ok.status, refused.status]).toEqual([200, 400]);
      ids.push(ok.headers.get("x-request-id"), refused.headers.get("x-request-id"));
      // The line is written after the answer (here, without waitUntil, on its own).
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      spy.mockRestore();
    }
    // Only these two requests' lines (an earlier test's may land late, after its answer).
    const entries = lines
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line))
      .filter((entry) => ids.includes(entry.request_id));
    expect(ids.every(Boolean)).toBe(true);
    expect(entries.map((e) => [e.status, e.outcome])).toEqual([[400, "rejected"]]);
  });

  // A page's request counts every person against its network's budget; a server's counts none.
  for (const sender of ["a page's", "a server's"] as const)
    it(`names in ${sender} log line the request's first 10 people, hashed, each once, in the order they came`, async () => {
      const emails = Array.from({ length: 12 }, (_, i) => `log-${i}-${crypto.randomUUID()}@example.com`);
      // Each person twice, the second time after the next: the log follows first sightings.
      const order = emails.flatMap((e, i) => (i ? [e, emails[i - 1] as string] : [e]));
      const activities = order.map((email) => loggedIn({ fields: { "str::first": "Chris", "str::email": email } }));
      const lines: string[] = [];
      const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
      let id: string | null = null;
      try {
        const res =
          sender === "a server's"
            ? await postWith(open, { activities }, { headers: { Authorization: `Bearer ${SERVER_TOKEN}` } })
            : await post({ activities });
        expect(res.status).toBe(200);
        id = res.headers.get("x-request-id");
        await new Promise((resolve) => setTimeout(resolve, 50));
      } finally {
        spy.mockRestore();
      }
      const entry = lines.map((line) => JSON.parse(line)).find((e) => e.request_id === id);
      const expected = await Promise.all(emails.slice(0, 10).map((email) => sha256Hex(`e:${email}`, 6)));
      expect(entry?.people).toEqual(expected);
      expect(entry?.sender).toBe(sender === "a server's" ? "server" : undefined);
    });

  it("writes one JSON line per request with counts and upstream status, never the key or a raw email", async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    try {
      await post({ activities: [loggedIn()] });
    } finally {
      spy.mockRestore();
    }
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0] ?? "{}");
    expect(entry).toMatchObject({ origin: ORIGIN, status: 200, outcome: "forwarded", activities: 1, forwarded: 1, upstream_status: 200 });
    expect(entry.request_id).toBeTruthy();
    expect(entry.people).toEqual([expect.stringMatching(/^[0-9a-f]{12}$/)]);
    expect(lines[0]).not.toContain("test-key-7f3a");
    expect(lines[0]).not.toContain("chris@example.com");
  });
});
