/**
 * The delivery queue's consumer in workerd, with the real queue and dead-letter queue: retries with
 * one delay a pack, dead letters (for Ortto's refusals and failed activities; after the retries in
 * dead-letter-after-retries.test.ts), their replay, and a missing or refused key.
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { MAX_REPLAYS } from "../../worker/delivery/consumer.ts";
import type { DeliveryMessage } from "../../worker/delivery/messages.ts";
import worker from "../../worker/index.ts";
import { clearDeadLetters, deadLetters, emulator, eventually, loggedIn, message, post } from "./helpers.ts";

const stored = async () => (await emulator.activities()).activities;

beforeEach(async () => {
  await emulator.reset();
  await clearDeadLetters();
});

describe("the queue consumer", () => {
  it("sends a message that Ortto refuses to the dead-letter queue, not retried, and still delivers the rest of its batch", {
    timeout: 30_000,
  }, async () => {
    const old = new Date(Date.now() - 91 * 86_400_000).toISOString();
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
      message("good-1", [loggedIn({ key: "g1", created: new Date().toISOString() })]),
      message("poison", [loggedIn({ key: "p", created: old })]),
      message("good-2", [loggedIn({ key: "g2", created: new Date().toISOString() })]),
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env);
    const result = await getQueueResult(batch, ctx);
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks.sort()).toEqual(["good-1", "good-2", "poison"]);
    expect((await stored()).map((a) => a.key).sort()).toEqual(["g1", "g2"]);
    const dead = await eventually(deadLetters, (d) => d.length === 1);
    expect(dead[0]).toMatchObject({ request_id: "poison", dead_reason: expect.stringContaining("Created date is more than 90 days ago") });
  });

  it("stops splitting a tired pack after a few failed parts when Ortto fails again after the probe: each message delivered or retried, never one request each", async () => {
    const now = new Date().toISOString();
    const keys = Array.from({ length: 64 }, (_, i) => `again-${i}`);
    // Ortto takes the probe (the first message), then fails every other request.
    await emulator.faults({ failKeys: keys.slice(1), statuses: [503] });
    vi.spyOn(Math, "random").mockReturnValue(0);
    const batch = createMessageBatch<DeliveryMessage>(
      "ortto-relay-delivery",
      keys.map((key) => message(key, [loggedIn({ key, created: now })], 4)),
    );
    const ctx = createExecutionContext();
    await worker.queue(batch, env);
    const result = await getQueueResult(batch, ctx);
    // This batch's requests only: a message an earlier test left on the real queue may arrive meanwhile.
    const requests = (await emulator.requests()).filter((r) => JSON.stringify(r.body).includes('"again-'));
    console.info(`Ortto down again after the probe: ${requests.length} requests for 64 tired messages`);
    expect(requests.length).toBeLessThanOrEqual(20);
    const retried = result.retryMessages.map((m: { msgId: string }) => m.msgId);
    expect([...result.explicitAcks, ...retried].sort()).toEqual([...keys].sort());
    expect(result.explicitAcks).toEqual(["again-0"]);
  });

  it("replays dead letters onto the delivery queue when the dead-letter consumer is attached", { timeout: 30_000 }, async () => {
    const now = new Date().toISOString();
    const batch = createMessageBatch<DeliveryMessage>(env.DEAD_LETTER_QUEUE, [
      {
        ...message("d1", [loggedIn({ key: "d1", created: now })]),
        body: {
          v: 1,
          request_id: "d1",
          activities: [loggedIn({ key: "d1", created: now })],
          dead_reason: "Ortto answered 503",
        } as DeliveryMessage,
      },
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env);
    expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["d1"]);
    expect((await eventually(stored, (a) => a.length === 1)).map((a) => a.key)).toEqual(["d1"]);
  });

  it(`keeps a message in the dead-letter queue after ${MAX_REPLAYS} replays instead of looping`, async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    const batch = createMessageBatch<DeliveryMessage>(env.DEAD_LETTER_QUEUE, [
      { ...message("d2", []), body: { v: 1, request_id: "d2", activities: [loggedIn()], replays: MAX_REPLAYS } as DeliveryMessage },
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env);
    spy.mockRestore();
    const result = await getQueueResult(batch, ctx);
    // Put back on the dead-letter queue (with a 12-hour delay) before being acked, not retried away.
    expect(result.explicitAcks).toEqual(["d2"]);
    expect(result.retryMessages).toEqual([]);
    expect(lines.some((l) => l.includes('"event":"dead_letter_kept"') && l.includes('"request_id":"d2"'))).toBe(true);
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("keeps activities that Ortto answered failed for in the dead-letter queue", { timeout: 30_000 }, async () => {
    // An Ortto person id the account does not know: Ortto answers 200 with status "failed".
    const unknownPerson = {
      activity_id: "act:cm:viewed-page",
      person_id: "0000000000000000000000ff",
      key: "ghost",
      created: new Date().toISOString(),
      attributes: {},
    };
    const res = await post({ activities: [unknownPerson, loggedIn()] });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { activities: { status: string }[] }).activities.map((a) => a.status)).toEqual(["failed", "ingested"]);
    const dead = await eventually(deadLetters, (d) => d.length === 1);
    expect(dead[0]).toMatchObject({
      dead_reason: expect.stringContaining('status "failed"'),
      activities: [expect.objectContaining({ key: "ghost" })],
    });
  });

  it("acknowledges a delivered batch with activities Ortto failed when its Analytics Engine points cannot be written, and logs that", {
    timeout: 30_000,
  }, async () => {
    const ghost = {
      activity_id: "act:cm:viewed-page",
      person_id: "0000000000000000000000ff",
      key: "ghost",
      created: new Date().toISOString(),
      attributes: {},
    };
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
      message("q1", [ghost, loggedIn({ key: "q1", created: new Date().toISOString() })] as DeliveryMessage["activities"]),
    ]);
    const RELAY_EVENTS = {
      writeDataPoint: () => {
        throw new Error("dataset unavailable");
      },
    };
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    const ctx = createExecutionContext();
    try {
      await worker.queue(batch, { ...env, RELAY_EVENTS });
    } finally {
      spy.mockRestore();
    }
    const result = await getQueueResult(batch, ctx);
    // Acknowledged, not retried: Ortto took the batch once, and a retry would send it again.
    expect(result.explicitAcks).toEqual(["q1"]);
    expect(result.retryMessages).toEqual([]);
    expect(await emulator.requests()).toHaveLength(1);
    expect(lines.filter((l) => l.includes('"event":"data_point_failed"'))).toHaveLength(2);
  });

  it("queues, not refuses, when Ortto rejects the relay's key, and delivers once it is fixed", { timeout: 30_000 }, async () => {
    await emulator.faults({ failRate: 1, statuses: [401] });
    const res = await post({ activities: [loggedIn()] });
    expect(res.status).toBe(202);
    await emulator.faults({ failRate: 0 });
    expect(await eventually(stored, (a) => a.length === 1)).toHaveLength(1);
  });

  it("keeps messages queued, not dropped, while the key is missing", async () => {
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
      message("m", [loggedIn({ key: "m", created: new Date().toISOString() })]),
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, { ...env, ORTTO_API_KEY: undefined });
    // Put back on the delivery queue as a new message (after the backoff), not retried towards max_retries.
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual(["m"]);
    expect(result.retryMessages).toEqual([]);
    expect(await emulator.requests()).toHaveLength(0);
    // The test env has the key: the message waiting on the queue is delivered.
    expect((await eventually(stored, (a) => a.length === 1)).map((a) => a.key)).toEqual(["m"]);
  });
});
