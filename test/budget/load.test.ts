/**
 * The account's request budget under load: the relay inside workerd with real Queues and the
 * pacer Durable Object, against the emulator enforcing Professional's 10 requests a second
 * (vitest.config.ts, project "budget"). The slowest worker test: ~10 s of sending on an idle
 * machine, a few of delivery; bounded by its deadlines.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import worker from "../../worker/index.ts";
import { emulator, loggedIn, postInit, RELAY } from "../worker/helpers.ts";

const PAGE_BATCHES = 1000;
/**
 * Distinct visitors: one a page batch, each from an IP of its own. Their counters live in isolate
 * memory and reach the ledger in groups, so a thousand contacts cost no Durable Object each.
 */
const PEOPLE = 1000;
const PER_SECOND = 100;
const BUDGET = 10;
const DELIVERY_DEADLINE_MS = 120_000;
/**
 * Page batches in flight at once. A thousand browsers do not wait for each other, but one loaded
 * workerd answering them all would; past this many the sender waits, so the test stays bounded
 * on a slow machine (it then sends slower than 100 a second, and says so).
 */
const MAX_IN_FLIGHT = 32;

interface Rate {
  max_rps: number;
  rate_limited: number;
  seconds: { second: number; requests: number; rate_limited: number }[];
}
/**
 * A page batch through the worker's fetch handler with the real bindings, its waitUntil work
 * awaited as the runtime would. (Called directly rather than through \`exports.default\`, whose
 * requests get slower the more of them a test makes.)
 */
async function visit(body: unknown, ip: string): Promise<number> {
  const ctx = createExecutionContext();
  const request = new Request(`${RELAY}/v1/activities/create`, postInit(body, { ip }));
  const res = await worker.fetch(request as Parameters<typeof worker.fetch>[0], env, ctx);
  await res.arrayBuffer();
  await waitOnExecutionContext(ctx);
  return res.status;
}

const rate = async () => (await (await fetch("http://ortto.test/_emulator/rate")).json()) as Rate;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// The relay logs a line per request and per delivery: thousands here, none of them the test's subject.
const quiet = vi.spyOn(console, "log").mockImplementation(() => {});
afterAll(() => quiet.mockRestore());

beforeAll(async () => {
  await emulator.reset();
  await emulator.faults({ maxRps: BUDGET, tryInSeconds: 1 });
});

describe(`${PAGE_BATCHES} page batches at ${PER_SECOND} a second on a budget of ${BUDGET} requests a second`, () => {
  it("delivers every activity exactly once within two minutes, without storming Ortto, and the browser sees only 2xx", async () => {
    const sent = new Set<string>();
    const answers: Promise<number>[] = [];
    const inFlight = new Set<Promise<unknown>>();
    const started = Date.now();
    for (let i = 0; i < PAGE_BATCHES; i++) {
      const due = started + (i * 1000) / PER_SECOND;
      if (due > Date.now()) await sleep(due - Date.now());
      while (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
      // One page batch: one activity, from an IP of its own.
      const activity = loggedIn({
        key: `load-${i}`,
        created: new Date().toISOString(),
        fields: { "str::first": `Visitor${i % PEOPLE}`, "str::email": `visitor${i % PEOPLE}@load.example` },
      });
      sent.add(`${activity.key}|${activity.created}`);
      const answer = visit({ activities: [activity] }, `198.18.${i >> 8}.${i & 255}`);
      answers.push(answer);
      inFlight.add(answer);
      void answer.finally(() => inFlight.delete(answer));
    }
    const statuses = await Promise.all(answers);
    const sendingMs = Date.now() - started;

    let stored: { key?: string; created?: string }[] = [];
    while (Date.now() - started < DELIVERY_DEADLINE_MS) {
      stored = (await emulator.activities()).activities;
      if (stored.length >= PAGE_BATCHES) break;
      await sleep(500);
    }
    const deliveredMs = Date.now() - started;
    // A moment more, so that a late duplicate would show.
    await sleep(1500);
    const state = await emulator.activities();
    const { seconds } = await rate();
    const requests = seconds.reduce((n, s) => n + s.requests, 0);
    const limited = seconds.reduce((n, s) => n + s.rate_limited, 0);
    const busiest = Math.max(...seconds.map((s) => s.requests));
    const byStatus: Record<number, number> = {};
    for (const s of statuses) byStatus[s] = (byStatus[s] ?? 0) + 1;
    console.info(
      `budget load: ${PAGE_BATCHES} page batches sent in ${(sendingMs / 1000).toFixed(1)} s (${JSON.stringify(byStatus)}); ` +
        `${state.activities.length} stored after ${(deliveredMs / 1000).toFixed(1)} s; ${requests} upstream requests, ` +
        `${limited} answered 429 (${((100 * limited) / Math.max(1, requests)).toFixed(1)}%), busiest second ${busiest}, ` +
        `${state.duplicates} re-sends merged`,
    );

    expect(statuses.every((s) => s >= 200 && s < 300)).toBe(true);
    expect(state.activities).toHaveLength(PAGE_BATCHES);
    expect(new Set(state.activities.map((a) => `${a.key}|${a.created}`))).toEqual(sent);
    expect(deliveredMs).toBeLessThan(DELIVERY_DEADLINE_MS);
    expect(limited).toBeLessThanOrEqual(0.05 * requests);
    expect(busiest).toBeLessThanOrEqual(BUDGET + 1);
    // Coalesced: far fewer requests than page batches.
    expect(requests).toBeLessThan(PAGE_BATCHES / 5);
  }, 180_000);
});
