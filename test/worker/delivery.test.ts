import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { DeliveryMessage } from "../../worker/delivery/messages.ts";
import worker from "../../worker/index.ts";
import { clearDeadLetters, deadLetters, emulator, eventually, loggedIn, message, pacerStats, post, postWith } from "./helpers.ts";

const stored = async () => (await emulator.activities()).activities;

function person(i: number) {
  return loggedIn({ fields: { "str::first": `Visitor${i}`, "str::email": `visitor${i}@example.com` } });
}

/** Records the delay each message of a batch is retried with (the queue result keeps only which were retried). */
function retryDelays(batch: MessageBatch<DeliveryMessage>) {
  const delays: Record<string, number | undefined> = {};
  for (const m of batch.messages) {
    const retry = m.retry.bind(m);
    vi.spyOn(m, "retry").mockImplementation((options) => {
      delays[m.id] = options?.delaySeconds;
      retry(options);
    });
  }
  return delays;
}

beforeEach(async () => {
  await emulator.reset();
  await clearDeadLetters();
});

describe("durable delivery through the queue", () => {
  it("answers 202 with queued statuses when Ortto answers 5xx, then delivers once Ortto recovers", { timeout: 30_000 }, async () => {
    await emulator.faults({ failRate: 1, statuses: [503] });
    const activity = loggedIn({ key: "k-503", created: new Date().toISOString() });
    const res = await post({ activities: [activity] });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ activities: [{ status: "queued", person_status: "queued" }] });

    await emulator.faults({ failRate: 0 });
    const delivered = await eventually(stored, (a) => a.length === 1);
    expect(delivered.map((a) => [a.key, a.created])).toEqual([[activity.key, activity.created]]);
  });

  it("answers 202 within the timeout when Ortto hangs, and the late re-send merges instead of duplicating", {
    timeout: 30_000,
  }, async () => {
    await emulator.faults({ hangMs: 1500 });
    const started = Date.now();
    const res = await postWith({ UPSTREAM_TIMEOUT_MS: "300" }, { activities: [loggedIn()] });
    expect(res.status).toBe(202);
    expect(Date.now() - started).toBeLessThan(1200);
    await emulator.faults({ hangMs: 0 });
    // Ortto got the first try after the relay gave up on it, and the queued re-send merged into it.
    const state = await eventually(emulator.activities, (s) => s.duplicates === 1);
    expect(state.activities).toHaveLength(1);
    expect(state.duplicates).toBe(1);
  });

  // 5 s rather than the 10 Ortto usually asks for: either is a pause the consumer holds messages through (past the 1 s it sleeps).
  it("holds messages for Ortto's whole try-in-seconds (5 s, longer than a consumer sleeps through) without spending a retry, and pauses every sender for it", {
    timeout: 30_000,
  }, async () => {
    await emulator.faults({ failNext: 1, statuses: [429], tryInSeconds: 5 });
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
      message("m1", [loggedIn({ key: "a", created: new Date().toISOString() })]),
    ]);
    // The held messages are recorded rather than delivered (they would come back in 5 s).
    const held: { delaySeconds?: number; keys: unknown[] }[] = [];
    const queue = {
      sendBatch: async (messages: MessageSendRequest<DeliveryMessage>[], options?: QueueSendBatchOptions) =>
        void held.push({ delaySeconds: options?.delaySeconds, keys: messages.map((m) => m.body.activities[0]?.key) }),
    };
    const ctx = createExecutionContext();
    const before = Date.now();
    await worker.queue(batch, { ...env, DELIVERY_QUEUE: queue as unknown as Queue<DeliveryMessage> });
    const result = await getQueueResult(batch, ctx);
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks).toEqual(["m1"]);
    expect(held).toHaveLength(1);
    expect(held[0]?.keys).toEqual(["a"]);
    expect(held[0]?.delaySeconds).toBeGreaterThanOrEqual(5);
    expect(held[0]?.delaySeconds).toBeLessThanOrEqual(6);
    expect(Date.parse((await pacerStats()).paused_until ?? "")).toBeGreaterThanOrEqual(before + 5_000);
    expect(await emulator.requests()).toHaveLength(1);

    await emulator.faults({ failRate: 1, statuses: [429], tryInSeconds: 1 });
    expect((await post({ activities: [loggedIn()] })).status).toBe(202);
    await emulator.faults({ failRate: 0 });
    expect(await eventually(stored, (a) => a.length === 1)).toHaveLength(1);
  });

  it("retries a pack Ortto answered 503 with one delay for all its messages, so they come back packed", async () => {
    await emulator.faults({ failNext: 1, statuses: [503] });
    const now = new Date().toISOString();
    const batch = createMessageBatch<DeliveryMessage>(
      "ortto-relay-delivery",
      ["r1", "r2", "r3"].map((id) => message(id, [loggedIn({ key: id, created: now })], 2)),
    );
    const delays = retryDelays(batch);
    const ctx = createExecutionContext();
    await worker.queue(batch, env);
    expect((await getQueueResult(batch, ctx)).retryMessages.map((m: { msgId: string }) => m.msgId).sort()).toEqual(["r1", "r2", "r3"]);
    expect(new Set(Object.values(delays)).size).toBe(1);
    // The three went in one request, though each had failed before.
    expect(await emulator.requests()).toHaveLength(1);
    expect((await emulator.requests())[0]?.body.activities).toHaveLength(3);
  });

  it("with DELIVERY=queue answers 202 at once and delivers through the queue", { timeout: 30_000 }, async () => {
    const res = await postWith({ DELIVERY: "queue" }, { activities: [loggedIn(), loggedIn()] });
    expect(res.status).toBe(202);
    expect(await emulator.requests()).toHaveLength(0);
    expect(await eventually(stored, (a) => a.length === 2)).toHaveLength(2);
  });

  it("delivers every accepted event exactly once while Ortto fails half of its requests", async () => {
    await emulator.faults({ failRate: 0.5, statuses: [500, 503, 429], tryInSeconds: 1, seed: 7 });
    const answers: number[] = [];
    const sent: [string, string][] = [];
    // 300 events from 100 visitors, 3 per request, from many IPs.
    for (let i = 0; i < 100; i++) {
      const batch = [0, 1, 2].map((n) => {
        const a = person(i);
        return { ...a, key: `v${i}-e${n}`, created: new Date(Date.now() - n * 1000).toISOString() };
      });
      for (const a of batch) sent.push([a.key, a.created]);
      answers.push((await post({ activities: batch }, { ip: `198.51.100.${i}` })).status);
    }
    expect(answers.every((s) => s === 200 || s === 202)).toBe(true);
    expect(answers).toContain(202);

    const delivered = await eventually(stored, (a) => a.length >= 300, 60_000);
    const pairs = new Set(delivered.map((a) => `${a.key}|${a.created}`));
    expect(pairs.size).toBe(300);
    expect(delivered).toHaveLength(300);
    expect([...pairs].sort()).toEqual(sent.map(([k, c]) => `${k}|${c}`).sort());
    expect(await deadLetters()).toEqual([]);
  }, 90_000);

  it("delivers everything accepted during an outage after Ortto returns", async () => {
    // Ortto is down until the test says it is back, however long the 40 requests take on a loaded machine.
    await emulator.faults({ downUntil: Date.now() + 600_000 });
    const answers: number[] = [];
    for (let i = 0; i < 40; i++) answers.push((await post({ activities: [person(i)] })).status);
    expect(answers.every((s) => s === 202)).toBe(true);
    expect(await stored()).toHaveLength(0);
    await emulator.faults({});
    const delivered = await eventually(stored, (a) => a.length >= 40, 60_000);
    expect(delivered).toHaveLength(40);
  }, 90_000);
});
