import { env, exports } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import worker, { relay } from "../../worker/index.ts";
import { newIsolate } from "../../worker/isolate.ts";
import { emulator, HEALTH_TOKEN, healthDetails, loggedIn, ORIGIN, post, postWith, RELAY, withinOneRateWindow } from "./helpers.ts";

beforeEach(async () => {
  await emulator.reset();
});

function preflight(origin: string) {
  return exports.default.fetch(`${RELAY}/v1/activities/create`, {
    method: "OPTIONS",
    headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type" },
  });
}

describe("CORS", () => {
  it("answers a preflight from an allowed origin with that origin, never *", async () => {
    const res = await preflight(ORIGIN);
    expect(res.status).toBe(204);
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe(ORIGIN);
    expect(res.headers.get("Access-Control-Allow-Methods")).toContain("POST");
    expect(res.headers.get("Access-Control-Allow-Headers")?.toLowerCase()).toContain("content-type");
    expect(res.headers.get("Vary")).toContain("Origin");
  });

  it("gives a preflight from another origin no allow-origin header", async () => {
    const res = await preflight("https://evil.example");
    expect(res.headers.get("Access-Control-Allow-Origin")).toBeNull();
  });

  it("allows a subdomain of a wildcard origin but not its apex", async () => {
    expect((await preflight("https://www.brand.example")).headers.get("Access-Control-Allow-Origin")).toBe("https://www.brand.example");
    expect((await preflight("https://brand.example")).headers.get("Access-Control-Allow-Origin")).toBeNull();
    expect((await post({ activities: [loggedIn()] }, { origin: "https://eu.brand.example" })).status).toBe(200);
  });

  it("puts the allow-origin and Vary headers on the POST answer, errors included", async () => {
    const ok = await post({ activities: [loggedIn()] });
    expect(ok.headers.get("Access-Control-Allow-Origin")).toBe(ORIGIN);
    expect(ok.headers.get("Vary")).toContain("Origin");
    const bad = await post("not json");
    expect(bad.status).toBe(400);
    expect(bad.headers.get("Access-Control-Allow-Origin")).toBe(ORIGIN);
    expect(bad.headers.get("Access-Control-Expose-Headers")).toContain("X-Request-Id");
  });
});

describe("the relay's clock", () => {
  it("dates every /v1 answer once, errors included, for the snippet to correct a wrong device clock", async () => {
    for (const res of [await post({ activities: [loggedIn()] }), await post("not json")]) {
      const date = res.headers.get("Date") ?? "";
      // One value (two would be joined with a comma): an HTTP date.
      expect(date).toMatch(/^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
      expect(Math.abs(Date.parse(date) - Date.now())).toBeLessThan(5_000);
      expect(res.headers.get("Access-Control-Expose-Headers")).toContain("Date");
      expect(res.headers.get("Vary")).toBe("Origin");
    }
  });
});

describe("every response", () => {
  it.each([
    ["GET", "/healthz"],
    ["GET", "/relay.js"],
    ["GET", "/nowhere"],
    ["POST", "/v1/activities/create"],
    ["OPTIONS", "/v1/activities/create"],
  ])("%s %s carries an X-Request-Id", async (method, path) => {
    const res = await exports.default.fetch(`${RELAY}${path}`, { method, headers: { Origin: ORIGIN } });
    expect(res.headers.get("X-Request-Id")).toMatch(/\S{8,}/);
  });

  it("answers an unknown route with a 404 in the error envelope", async () => {
    const res = await exports.default.fetch(`${RELAY}/v2/people`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 404, error: "No route for GET /v2/people" });
  });
});

describe("GET /healthz", () => {
  it("tells anyone only that the relay is up and its version", async () => {
    const res = await exports.default.fetch(`${RELAY}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok", version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
  });

  it("reports settings and delivery signals to the server token, without any secret", async () => {
    const res = await worker.fetch(new Request(`${RELAY}/healthz`, { headers: { Authorization: `Bearer ${HEALTH_TOKEN}` } }), {
      ...env,
      SERVER_TOKEN: HEALTH_TOKEN,
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({
      status: "ok",
      upstream: "ortto.test",
      sites: { default: { key_configured: true } },
      identity: "open",
      geo_mode: "ip",
      delivery: "inline",
      queue: expect.objectContaining({ queued: expect.any(Number), dead_lettered: expect.any(Number) }),
      circuits: {},
      budget: expect.objectContaining({ isolate: expect.any(Object) }),
    });
    expect(text).not.toContain("test-key-7f3a");
    expect(text).not.toContain(HEALTH_TOKEN);
  });

  it("refuses a wrong server token with a 401", async () => {
    const res = await worker.fetch(new Request(`${RELAY}/healthz`, { headers: { Authorization: "Bearer nope" } }), {
      ...env,
      SERVER_TOKEN: HEALTH_TOKEN,
    });
    expect(res.status).toBe(401);
  });

  it("answers from isolate memory: no call to the account pacer", async () => {
    const ns = env.UPSTREAM_PACER;
    const get = vi.spyOn(ns, "get");
    await exports.default.fetch(`${RELAY}/healthz`);
    await healthDetails();
    expect(get).not.toHaveBeenCalled();
    get.mockRestore();
  });

  it("is rate-limited per network like the API", async () => {
    await withinOneRateWindow();
    const statuses: number[] = [];
    for (let i = 0; i < 110; i++) {
      statuses.push((await exports.default.fetch(`${RELAY}/healthz`, { headers: { "CF-Connecting-IP": "198.51.100.77" } })).status);
    }
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
  });
});

describe("one isolate's memory", () => {
  it("counts on /healthz the activities queued by this isolate, not by another", async () => {
    const isolate = newIsolate();
    const details = async (handler: ReturnType<typeof relay>) => {
      const request = new Request(`${RELAY}/healthz`, { headers: { Authorization: `Bearer ${HEALTH_TOKEN}` } });
      const res = await handler.fetch(request, { ...env, SERVER_TOKEN: HEALTH_TOKEN });
      return ((await res.json()) as { queue: { queued: number } }).queue;
    };
    const queueing = { DELIVERY: "queue" };
    expect((await postWith(queueing, { activities: [loggedIn(), loggedIn()] }, { isolate })).status).toBe(202);
    expect((await details(relay(isolate))).queued).toBe(2);
    expect((await details(relay(newIsolate()))).queued).toBe(0);
  });

  it("logs once per isolate that identities are not verified (open mode)", async () => {
    const log = vi.spyOn(console, "log");
    const [first, second] = [newIsolate(), newIsolate()];
    for (const isolate of [first, first, second]) {
      expect((await postWith({}, { activities: [loggedIn()] }, { isolate })).status).toBe(200);
    }
    expect(log.mock.calls.filter(([line]) => String(line).includes('"event":"open_mode"'))).toHaveLength(2);
    log.mockRestore();
  });
});
