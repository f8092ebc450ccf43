/**
 * CORS, Vary and Date on every answer under /v1, whatever its status: set with c.header() before
 * the handler (Date as the relay answers, for the snippet's clock), each exactly once.
 */
import { exports } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { emulator, loggedIn, ORIGIN, post, postInit, RELAY, withinOneRateWindow } from "./helpers.ts";
import { open, person, postWith, reachNewIsolate, SERVER_TOKEN, unique } from "./people.ts";

const EXPOSED = "X-Request-Id,Retry-After,X-Relay-Outcome,Date";
const IMF_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

beforeEach(async () => {
  await emulator.reset();
  reachNewIsolate();
});
afterEach(() => reachNewIsolate());

/** The headers every non-preflight answer under /v1 carries, each exactly once. */
function expectV1Headers(res: Response, allowOrigin: string | null) {
  expect(res.headers.get("Access-Control-Allow-Origin")).toBe(allowOrigin);
  expect(res.headers.get("Access-Control-Expose-Headers")).toBe(allowOrigin ? EXPOSED : null);
  expect(res.headers.get("Vary")).toBe("Origin");
  expect(res.headers.get("Date")).toMatch(IMF_DATE);
  expect(res.headers.get("X-Request-Id")).toMatch(/^[\w-]{8,}$/);
}

const v1 = (path: string, init: RequestInit) => exports.default.fetch(`${RELAY}${path}`, init);

describe("CORS, Vary and Date on every /v1 answer", () => {
  it("200 from an allowed origin and from a wildcard subdomain", async () => {
    const ok = await post({ activities: [loggedIn()] });
    expect(ok.status).toBe(200);
    expectV1Headers(ok, ORIGIN);
    const sub = await post({ activities: [loggedIn()] }, { origin: "https://eu.brand.example" });
    expect(sub.status).toBe(200);
    expectV1Headers(sub, "https://eu.brand.example");
  });

  it("202 crawler answer keeps its X-Relay-Outcome beside the CORS headers", async () => {
    const googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const res = await post({ activities: [loggedIn()] }, { headers: { "User-Agent": googlebot, "Sec-Fetch-Mode": "cors" } });
    expect(res.status).toBe(202);
    expect(res.headers.get("X-Relay-Outcome")).toBe("bot");
    expectV1Headers(res, ORIGIN);
  });

  it("400, 401, 413 and 415 from an allowed origin", async () => {
    const bad = await post("not json");
    expect(bad.status).toBe(400);
    expectV1Headers(bad, ORIGIN);
    const token = await post({ activities: [loggedIn()] }, { headers: { Authorization: "Bearer wrong" } });
    expect(token.status).toBe(401);
    expectV1Headers(token, ORIGIN);
    const big = await post(`{"activities":[],"pad":"${"x".repeat(2 * 1024 * 1024)}"}`);
    expect(big.status).toBe(413);
    expectV1Headers(big, ORIGIN);
    const xml = await post({ activities: [loggedIn()] }, { contentType: "application/xml" });
    expect(xml.status).toBe(415);
    expectV1Headers(xml, ORIGIN);
  });

  it("429 (contact limit, with Retry-After) and 503 (no key)", async () => {
    const limited = { ...open, CONTACT_ACTIVITY_LIMIT: "1" };
    const chris = unique("cors429");
    expect((await postWith(limited, { activities: [person(chris)] })).status).toBe(200);
    const refused = await postWith(limited, { activities: [person(chris)] });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("Retry-After"))).toBeGreaterThan(0);
    expectV1Headers(refused, ORIGIN);
    const nokey = await postWith({ ORTTO_API_KEY: "" }, { activities: [loggedIn()] });
    expect(nokey.status).toBe(503);
    expectV1Headers(nokey, ORIGIN);
  });

  it("429 from the per-network request budget", async () => {
    const ip = "198.51.100.77";
    let res: Response | undefined;
    // The limiter counts in windows of a minute: 120 requests straddling two would meet neither's 100.
    await withinOneRateWindow();
    for (let i = 0; i < 120; i++) {
      res = await v1("/v1/activities/create", postInit("not json", { ip }));
      if (res.status === 429) break;
    }
    expect(res?.status).toBe(429);
    expectV1Headers(res as Response, ORIGIN);
  });

  it("403 for a disallowed origin, an origin with a trailing slash: no allow-origin, still Vary and Date", async () => {
    for (const origin of ["https://evil.example", "https://shop.example/", "null"]) {
      const res = await post({ activities: [loggedIn()] }, { origin });
      expect(res.status).toBe(403);
      expectV1Headers(res, null);
    }
  });

  it("an origin differing only in case is served, and echoed as sent (as hono/cors does)", async () => {
    const res = await post({ activities: [loggedIn()] }, { origin: "HTTPS://SHOP.EXAMPLE" });
    expect(res.status).toBe(200);
    expectV1Headers(res, "HTTPS://SHOP.EXAMPLE");
  });

  it("a server's POST with a Bearer token and no Origin: no allow-origin, Vary and Date", async () => {
    const res = await postWith(
      open,
      { activities: [person(unique("srv"))] },
      { origin: null, headers: { Authorization: `Bearer ${SERVER_TOKEN}` } },
    );
    expect(res.status).toBe(200);
    expectV1Headers(res, null);
  });

  it("404 for an unknown /v1 route or method", async () => {
    const a = await v1("/v1/nowhere", postInit({}));
    expect(a.status).toBe(404);
    expectV1Headers(a, ORIGIN);
    const b = await v1("/v1/activities/create", { method: "GET", headers: { Origin: ORIGIN } });
    expect(b.status).toBe(404);
    expectV1Headers(b, ORIGIN);
    const c = await v1("/v1/activities/create", { method: "GET", headers: { Origin: "https://evil.example" } });
    expectV1Headers(c, null);
  });

  it("OPTIONS preflights: allowed gets the origin, others none; Vary names Origin once", async () => {
    const pre = (origin: string) =>
      v1("/v1/activities/create", {
        method: "OPTIONS",
        headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type" },
      });
    for (const [origin, allowed] of [
      [ORIGIN, ORIGIN],
      ["https://evil.example", null],
    ] as const) {
      const res = await pre(origin);
      expect(res.status).toBe(204);
      expect(res.headers.get("Access-Control-Allow-Origin")).toBe(allowed);
      const vary = (res.headers.get("Vary") ?? "").split(",").map((v) => v.trim().toLowerCase());
      expect(vary.filter((v) => v === "origin")).toHaveLength(1);
      expect(res.headers.get("X-Request-Id")).toMatch(/^[\w-]{8,}$/);
    }
  });

  it("Date is the relay's clock when it answers, not when the request arrived (a slow Ortto skews every tab's clock)", {
    timeout: 20_000,
  }, async () => {
    // Ortto takes 2.5 s (under UPSTREAM_TIMEOUT_MS 5000): the answer is a 200 after the wait.
    await emulator.faults({ hangMs: 2500 });
    const res = await post({ activities: [loggedIn()] });
    const received = Date.now();
    expect(res.status).toBe(200);
    // What the snippet computes (snippet/src/core.ts `done`): the relay's clock minus ours, from Date + 500 ms,
    // and it moves every tab's offset when that is over 1 s from the one it holds.
    const skew = Date.parse(res.headers.get("Date") as string) + 500 - received;
    expect(Math.abs(skew)).toBeLessThan(1000);
  });
});
