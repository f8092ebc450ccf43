/**
 * Ortto's 429 pauses every sender, not one message; light traffic stays inline; /healthz shows
 * the budget. The relay on a budget of 10 requests a second (vitest.config.ts, project "budget").
 */
import { beforeEach, describe, expect, it, vi } from "vitest";
import { emulator, healthDetails, loggedIn, pacerStats, post } from "../worker/helpers.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const person = (i: number) =>
  loggedIn({ key: `p-${i}`, created: new Date().toISOString(), fields: { "str::first": `P${i}`, "str::email": `pause${i}@example.com` } });

async function healthz() {
  const details = await healthDetails<{
    budget: {
      max_rps: number;
      isolate: {
        rate_limited: number;
        paused_until: string | null;
        coalescing_until: string | null;
        page_batches_inline: number;
        page_batches_coalesced: number;
        inline_lease: { per_second: number; until: string } | null;
      };
    };
  }>();
  return { budget: { ...details.budget, account: await pacerStats() } };
}

beforeEach(async () => {
  vi.spyOn(console, "log").mockImplementation(() => {});
  await emulator.reset();
  // Whatever an earlier test coalesced has passed (the queue's sends keep page batches coalescing
  // for 3 s), and the isolate's inline lease is not one the queue's sends left no room in. The
  // test that pauses comes last: a pause's aftermath is 10 s more (RECENT_429_MS).
  for (const until = Date.now() + 30_000; Date.now() < until; await sleep(500)) {
    const { account, isolate } = (await healthz()).budget;
    const leaseRoom = !isolate.inline_lease || isolate.inline_lease.per_second > 0;
    if (!account.paused_until && !account.short_until && !isolate.paused_until && !isolate.coalescing_until && leaseRoom) break;
  }
}, 40_000);

describe("the account's request budget", () => {
  it("keeps light traffic inline, with Ortto's per-activity answers", async () => {
    const before = (await healthz()).budget.isolate.page_batches_inline;
    const res = await post({ activities: [person(1)] });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { activities: { status: string }[] }).activities[0]?.status).toBe("ingested");
    expect((await healthz()).budget.isolate.page_batches_inline).toBe(before + 1);
  });

  it("re-packs the messages an outage left in the queue into full requests, within the budget", async () => {
    await emulator.faults({ maxRps: 10, tryInSeconds: 1, downUntil: Date.now() + 1500 });
    const answers: number[] = [];
    for (let i = 0; i < 60; i++) answers.push((await post({ activities: [person(100 + i)] })).status);
    expect(answers.every((s) => s === 200 || s === 202)).toBe(true);

    const until = Date.now() + 60_000;
    let stored = (await emulator.activities()).activities;
    while (stored.length < 60 && Date.now() < until) {
      await sleep(500);
      stored = (await emulator.activities()).activities;
    }
    expect(new Set(stored.map((a) => a.key)).size).toBe(60);
    const { seconds } = (await (await fetch("http://ortto.test/_emulator/rate")).json()) as {
      seconds: { second: number; requests: number; rate_limited: number }[];
    };
    const requests = seconds.reduce((n, s) => n + s.requests, 0);
    const limited = seconds.reduce((n, s) => n + s.rate_limited, 0);
    console.info(
      `retries after an outage: ${requests} upstream requests over ${seconds.length} seconds, ${limited} answered 429, ` +
        `busiest second ${Math.max(...seconds.map((s) => s.requests))}`,
    );
    // The retried messages travelled packed, not one a request, and within the budget.
    expect(requests).toBeLessThanOrEqual(30);
    expect(Math.max(...seconds.map((s) => s.requests))).toBeLessThanOrEqual(11);
    expect(limited).toBeLessThanOrEqual(0.05 * requests);
  }, 90_000);

  it("pauses every sender for Ortto's try-in-seconds after a 429: page batches skip the inline try, the queue waits", async () => {
    await emulator.faults({ failRate: 1, statuses: [429], tryInSeconds: 2 });
    const limitedAt = Date.now();
    expect((await post({ activities: [person(2)] })).status).toBe(202);
    await emulator.faults({ failRate: 0 });
    const requestsAfter429 = (await emulator.requests()).length;

    // The next page batches go straight to the queue: Ortto sees no inline try.
    for (let i = 3; i < 6; i++) expect((await post({ activities: [person(i)] })).status).toBe(202);
    expect(await emulator.requests()).toHaveLength(requestsAfter429);

    const health = await healthz();
    expect(health.budget.max_rps).toBe(10);
    expect(health.budget.isolate.rate_limited).toBeGreaterThanOrEqual(1);
    expect(health.budget.isolate.paused_until).not.toBeNull();

    // The queue delivers all four, in one request, and not before the pause is over.
    const until = Date.now() + 30_000;
    let stored = (await emulator.activities()).activities;
    while (stored.length < 4 && Date.now() < until) {
      await sleep(250);
      stored = (await emulator.activities()).activities;
    }
    expect(stored.map((a) => a.key).sort()).toEqual(["p-2", "p-3", "p-4", "p-5"]);
    const delivered = (await emulator.requests()).slice(requestsAfter429);
    expect(delivered.every((r) => r.status === 200)).toBe(true);
    expect(Date.parse((delivered[0] as unknown as { received_at: string }).received_at)).toBeGreaterThanOrEqual(limitedAt + 2000);
    expect(delivered.reduce((n, r) => n + (r.body.activities?.length ?? 0), 0)).toBe(4);
    expect((await healthz()).budget.account.rate_limited).toBeGreaterThanOrEqual(1);
  }, 45_000);
});
