import { beforeEach, describe, expect, it } from "vitest";
import { call, create, createJson, loggedIn, resetEmulator, setFaults, stored } from "./helpers.ts";

beforeEach(async () => {
  await resetEmulator();
});

describe("fault injection (/_emulator/faults)", () => {
  it("fails every create request with a status from the list when failRate is 1, and stores nothing", async () => {
    await setFaults({ failRate: 1, statuses: [502] });
    const { status, body } = await createJson({ activities: [loggedIn()] });
    expect(status).toBe(502);
    expect(body).toMatchObject({ code: 502, error: expect.any(String), request_id: expect.any(String) });
    const inspect = await stored();
    expect(inspect.activities).toEqual([]);
    expect(inspect.requests).toBe(1);
  });

  it("answers 429 with Ortto's real rate-limit body", async () => {
    await setFaults({ failRate: 1, statuses: [429] });
    const res = await create({ activities: [loggedIn()] });
    expect(res.status).toBe(429);
    expect(await res.json()).toEqual({ error: { code: "rate-limit", message: "rate limit", "try-in-seconds": 10 } });
  });

  it("fails the same requests again for the same seed", async () => {
    const run = async () => {
      await resetEmulator();
      await setFaults({ failRate: 0.5, statuses: [500, 503, 429], seed: 42 });
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) statuses.push((await create({ activities: [loggedIn()] })).status);
      return statuses;
    };
    const first = await run();
    expect(await run()).toEqual(first);
    expect(first).toContain(200);
    expect(first.some((s) => s !== 200)).toBe(true);
    expect(first.every((s) => [200, 500, 503, 429].includes(s))).toBe(true);
  });

  it("answers 503 to every create request until downUntil, then recovers", async () => {
    await setFaults({ downUntil: Date.now() + 60_000 });
    const down = await createJson({ activities: [loggedIn()] });
    expect(down.status).toBe(503);
    expect(down.body.code).toBe(503);
    await setFaults({ downUntil: Date.now() - 1 });
    expect((await createJson({ activities: [loggedIn()] })).status).toBe(200);
    expect((await stored()).activities).toHaveLength(1);
  });

  it("delays every create response by hangMs, after storing the activities", async () => {
    await setFaults({ hangMs: 300 });
    const started = Date.now();
    const res = await create({ activities: [loggedIn()] });
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect((await stored()).activities).toHaveLength(1);
  });

  it("reports the current settings, with omitted ones back at their defaults", async () => {
    await setFaults({ failRate: 0.25, hangMs: 10, seed: 7 });
    expect(await (await call("/_emulator/faults")).json()).toEqual({
      failRate: 0.25,
      statuses: [500, 503, 429],
      hangMs: 10,
      downUntil: 0,
      tryInSeconds: 10,
      failKeys: [],
      maxRps: 0,
      failNext: 0,
      refuseKey: 0,
      detailsPerActivity: false,
      seed: 7,
    });
    await setFaults({ statuses: [500] });
    expect(await (await call("/_emulator/faults")).json()).toEqual({
      failRate: 0,
      statuses: [500],
      hangMs: 0,
      downUntil: 0,
      tryInSeconds: 10,
      failKeys: [],
      maxRps: 0,
      failNext: 0,
      refuseKey: 0,
      detailsPerActivity: false,
    });
  });

  it("answers 400 for invalid settings and keeps the current ones", async () => {
    await setFaults({ failRate: 1, statuses: [500] });
    const res = await setFaults({ failRate: 2, statuses: [200] });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 400, details: expect.any(Array) });
    expect(await (await call("/_emulator/faults")).json()).toMatchObject({ failRate: 1, statuses: [500] });
  });

  it("answers 429 with the configured try-in-seconds", async () => {
    await setFaults({ failRate: 1, statuses: [429], tryInSeconds: 2 });
    const res = await createJson({ activities: [loggedIn()] });
    expect(res.status).toBe(429);
    expect(res.body).toEqual({ error: { code: "rate-limit", message: "rate limit", "try-in-seconds": 2 } });
  });

  it("fails only the next failNext requests, then answers normally", async () => {
    await setFaults({ failNext: 1, statuses: [429], tryInSeconds: 3 });
    const limited = await createJson({ activities: [loggedIn({ key: "n1" })] });
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual({ error: { code: "rate-limit", message: "rate limit", "try-in-seconds": 3 } });
    expect((await createJson({ activities: [loggedIn({ key: "n2" })] })).status).toBe(200);
  });

  it("answers every request with refuseKey's status, as Ortto answers a wrong key", async () => {
    await setFaults({ refuseKey: 401 });
    const res = await createJson({ activities: [loggedIn()] });
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ code: 401, error: "Invalid API key" });
  });

  it("names the refused activity in details, one entry per activity, with detailsPerActivity", async () => {
    await setFaults({ failKeys: ["bad"], statuses: [400], detailsPerActivity: true });
    const res = await createJson({ activities: [loggedIn({ key: "ok" }), loggedIn({ key: "bad" })] });
    expect(res.status).toBe(400);
    expect((res.body as unknown as { details: { status: string }[] }).details.map((d) => d.status)).toEqual(["ok", "invalid"]);
  });

  it("always fails a request that carries a poison key, and only that one", async () => {
    await setFaults({ failKeys: ["poison"], statuses: [500] });
    expect((await createJson({ activities: [loggedIn({ key: "poison" })] })).status).toBe(500);
    expect((await createJson({ activities: [loggedIn({ key: "fine" })] })).status).toBe(200);
  });

  it("answers 429 beyond maxRps create requests in a calendar second, counts every request per second, and shows it in the feed", async () => {
    await setFaults({ maxRps: 3, tryInSeconds: 1 });
    // Start at the beginning of a second, so that the whole burst lands in one.
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000)));
    const answers = await Promise.all(Array.from({ length: 5 }, () => createJson({ activities: [loggedIn()] })));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 200, 429, 429]);
    expect(answers.find((a) => a.status === 429)?.body).toEqual({
      error: { code: "rate-limit", message: "rate limit", "try-in-seconds": 1 },
    });
    expect((await stored()).activities).toHaveLength(3);
    const rate = (await (await call("/_emulator/rate")).json()) as {
      max_rps: number;
      rate_limited: number;
      seconds: { second: number; requests: number; rate_limited: number }[];
    };
    expect(rate.max_rps).toBe(3);
    expect(rate.rate_limited).toBe(2);
    expect(rate.seconds).toEqual([{ second: expect.any(Number), requests: 5, rate_limited: 2 }]);
    const html = await (await call("/")).text();
    expect(html).toContain("Request budget 3 a second · 2 requests answered 429 (rate limit) · busiest second 5 requests");

    // The next second has a fresh budget.
    await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000)));
    expect((await createJson({ activities: [loggedIn()] })).status).toBe(200);
  });

  it("clears faults on reset", async () => {
    await setFaults({ failRate: 1, statuses: [500] });
    await resetEmulator();
    expect((await createJson({ activities: [loggedIn()] })).status).toBe(200);
  });
});
