import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { MAX_AGE_MS } from "../../shared/activities.ts";
import { MAX_REPLAYS } from "../../worker/delivery/consumer.ts";
import type { DeliveryMessage } from "../../worker/delivery/messages.ts";
import worker from "../../worker/index.ts";
import { clearDeadLetters, deadLetters, emulator, eventually, loggedIn, message, postWith } from "./helpers.ts";

/**
 * Delivery through the queue at its edges: activities that expire while they wait (and the edge
 * refusing what could), a missing key, dead letters (what is not an activity, what Ortto answers
 * failed, a dead-letter queue that fails, the replay count), and a delivery queue that takes only
 * part of a request.
 */
const stored = async () => (await emulator.activities()).activities;

/** Collects the log lines written while `run` runs. */
async function logsOf(run: () => Promise<unknown>): Promise<Record<string, unknown>[]> {
  const lines: string[] = [];
  const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
  try {
    await run();
  } finally {
    spy.mockRestore();
  }
  return lines.map((l) => JSON.parse(l));
}

/** A queue binding that passes every sendBatch to the real queue except the ones listed, which fail. */
function failingQueue(queue: Queue, failCalls: number[]) {
  let calls = 0;
  return {
    send: queue.send.bind(queue),
    sendBatch: async (messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions) => {
      calls++;
      if (failCalls.includes(calls)) throw new Error("Queue sendBatch failed");
      return queue.sendBatch(messages, options);
    },
  } as unknown as Queue;
}

beforeEach(async () => {
  await emulator.reset();
  await clearDeadLetters();
});

describe("activities that expire while they wait", () => {
  it("dead-letters only the activity now over 90 days old, with its reason, and delivers the rest of its message", async () => {
    const expired = new Date(Date.now() - 90 * 86_400_000 + 30_000).toISOString(); // accepted in time, 90 days old now
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
      message("mixed", [loggedIn({ key: "fresh", created: new Date().toISOString() }), loggedIn({ key: "stale", created: expired })]),
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env);
    expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["mixed"]);
    const dead = await eventually(deadLetters, (d) => d.length === 1);
    expect(dead).toEqual([
      expect.objectContaining({
        request_id: "mixed",
        activities: [expect.objectContaining({ key: "stale" })],
        dead_reason: expect.stringContaining("more than 90 days ago"),
      }),
    ]);
    expect((await eventually(stored, (a) => a.length === 1)).map((a) => a.key)).toEqual(["fresh"]);
    // Ortto never saw the expired one: no refused request counts toward its IP ban.
    expect((await emulator.requests()).map((r) => r.status)).toEqual([200]);
  });

  it("refuses at the edge what could expire while it waits, and delivers what it accepts near the limit", { timeout: 20_000 }, async () => {
    const late = loggedIn({ key: "edge-90d", created: new Date(Date.now() - MAX_AGE_MS + 30_000).toISOString() });
    const refused = await postWith({ DELIVERY: "queue" }, { activities: [late] });
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain("activities.0.created");
    const inTime = loggedIn({ key: "edge-89d", created: new Date(Date.now() - MAX_AGE_MS + 6 * 60_000).toISOString() });
    expect((await postWith({ DELIVERY: "queue" }, { activities: [inTime] })).status).toBe(202);
    const stored = await eventually(
      async () => (await emulator.activities()).activities.length + (await deadLetters()).length,
      (n) => n > 0,
    );
    expect(stored).toBeGreaterThan(0);
    expect(await deadLetters()).toEqual([]);
    expect((await emulator.activities()).activities.map((a) => a.key)).toEqual(["edge-89d"]);
  });
});

describe("a missing site key", () => {
  it("keeps a message waiting past the queue's max_retries instead of letting it be dead-lettered", async () => {
    // The 14th try is the last one the test queue's max_retries allows: a retry would dead-letter it.
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
      message("waiting", [loggedIn({ key: "w", created: new Date().toISOString() })], 14),
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, { ...env, ORTTO_API_KEY: undefined });
    const result = await getQueueResult(batch, ctx);
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks).toEqual(["waiting"]);
    // Put back on the delivery queue as a new message: delivered once the key is there (the test env has it).
    expect((await eventually(stored, (a) => a.length === 1)).map((a) => a.key)).toEqual(["w"]);
    expect(await deadLetters()).toEqual([]);
  });
});

describe("dead letters", () => {
  it("never replays a dead-lettered non-delivery message as an empty request", async () => {
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
      { id: "junk", timestamp: new Date(), attempts: 1, body: "not an activity" as unknown as DeliveryMessage },
    ]);
    await worker.queue(batch, env);
    const [dead] = await eventually(deadLetters, (d) => d.length === 1);
    expect(dead).toMatchObject({ dead_reason: "not a delivery message", raw: "not an activity" });

    const replay = createMessageBatch<DeliveryMessage>(env.DEAD_LETTER_QUEUE, [
      { id: "d", timestamp: new Date(), attempts: 1, body: dead as DeliveryMessage },
    ]);
    const ctx = createExecutionContext();
    const lines = await logsOf(() => worker.queue(replay, env));
    expect((await getQueueResult(replay, ctx)).explicitAcks).toEqual(["d"]);
    expect(lines).toContainEqual(expect.objectContaining({ event: "dead_letter_kept" }));
    expect(lines).toContainEqual(expect.objectContaining({ event: "dead_letters_replayed", messages: 0 }));
    // Time for a wrong replay to reach Ortto through the delivery queue.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("does not swallow a dead-letter queue failure for Ortto's failed activities: logged, and kept through the delivery queue", async () => {
    const unknownPerson = {
      activity_id: "act:cm:viewed-page",
      person_id: "0000000000000000000000ff",
      key: "ghost",
      created: new Date().toISOString(),
      attributes: {},
    };
    let status = 0;
    let statuses: string[] = [];
    const lines = await logsOf(async () => {
      const res = await postWith(
        { DEAD_LETTERS: failingQueue(env.DEAD_LETTERS, [1]) as never },
        { activities: [unknownPerson, loggedIn()] },
      );
      status = res.status;
      statuses = ((await res.json()) as { activities: { status: string }[] }).activities.map((a) => a.status);
    });
    expect(status).toBe(200);
    expect(statuses).toEqual(["failed", "ingested"]);
    expect(lines).toContainEqual(expect.objectContaining({ event: "dead_letter_failed", activities: 1, requeued: true }));
    // The queue consumer asks Ortto again and keeps what it still refuses.
    const dead = await eventually(deadLetters, (d) => d.length === 1);
    expect(dead[0]).toMatchObject({
      dead_reason: expect.stringContaining('status "failed"'),
      activities: [expect.objectContaining({ key: "ghost" })],
    });
  });

  it("keeps the replay count on activities Ortto answers failed", { timeout: 20_000 }, async () => {
    const unknownPerson = {
      activity_id: "act:cm:viewed-page",
      person_id: "0000000000000000000000ff",
      key: "ghost-replayed",
      created: new Date().toISOString(),
      attributes: {},
    };
    const m = message("replayed", [unknownPerson]);
    m.body.replays = MAX_REPLAYS;
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [m]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env);
    await getQueueResult(batch, ctx);
    const dead = await eventually(deadLetters, (d) => d.length === 1);
    expect(dead).toHaveLength(1);
    expect(dead[0]?.dead_reason).toContain('status "failed"');
    // The next replay keeps it (replays >= MAX_REPLAYS) rather than replaying it again.
    expect(dead[0]?.replays).toBe(MAX_REPLAYS);
  });
});

describe("a delivery queue that takes only part of a request", () => {
  /** An order of ~11 kB, dated by its sender or not: 30 of them need several messages and two sendBatch calls. */
  const largeOrder = (who: string, i: number, dated: boolean) => ({
    activity_id: "act:cm:placed-order",
    ...(dated ? { created: new Date(Date.now() - i * 1000).toISOString() } : {}),
    fields: { "str::email": `${who}-${i}@example.com` },
    attributes: { "txt:cm:gift-message": "g".repeat(4000), "obj:cm:items": [{ note: "n".repeat(7000), i }] },
  });
  it("names the activities it queued before a partial sendBatch failure, so re-sending the rest creates one activity per event", {
    timeout: 30_000,
  }, async () => {
    const order = (i: number, dated: boolean) => largeOrder("buyer", i, dated);
    const body = { activities: Array.from({ length: 30 }, (_, i) => order(i, i >= 2)) };
    const first = await postWith({ DELIVERY: "queue", DELIVERY_QUEUE: failingQueue(env.DELIVERY_QUEUE, [2]) as never }, body);
    expect(first.status).toBe(503);
    // Without keys of the sender's, the relay's keys are new on every send: the answer names what was queued.
    const refusal = (await first.json()) as { error: string; details: { path: string }[] };
    expect(refusal.error).toContain("send again all but those named in details");
    const queued = new Set(refusal.details.map((d) => Number(d.path.split(".")[1])));
    expect(queued.size).toBeGreaterThan(0);
    const rest = { activities: body.activities.filter((_, i) => !queued.has(i)) };
    expect((await postWith({ DELIVERY: "queue" }, rest)).status).toBe(202);
    await eventually(stored, (a) => a.length >= 30);
    await new Promise((r) => setTimeout(r, 2000)); // time for any duplicate to arrive
    const delivered = await stored();
    expect(delivered).toHaveLength(30);
    expect(new Set(delivered.map((a) => a.fields?.["str::email"])).size).toBe(30);
  });

  it("names the queued activities by their index in the request when it also refused some, so re-sending the rest creates one activity per event", {
    timeout: 30_000,
  }, async () => {
    const order = (i: number, dated: boolean) => largeOrder("shifted", i, dated);
    // Refused at index 0 (an order total that is not a number): every other index is one more than its place among the valid.
    const bad = { ...order(99, true), attributes: { "int:cm:order-total": "lots" } };
    const body = { activities: [bad, ...Array.from({ length: 30 }, (_, i) => order(i, i >= 2))] };
    const first = await postWith({ DELIVERY: "queue", DELIVERY_QUEUE: failingQueue(env.DELIVERY_QUEUE, [2]) as never }, body);
    expect(first.status).toBe(503);
    const refusal = (await first.json()) as { details: { path: string }[] };
    const queued = new Set(refusal.details.map((d) => Number(d.path.split(".")[1])));
    expect(queued.has(0)).toBe(false);
    const rest = { activities: body.activities.filter((_, i) => i > 0 && !queued.has(i)) };
    expect((await postWith({ DELIVERY: "queue" }, rest)).status).toBe(202);
    await eventually(stored, (a) => a.length >= 30);
    await new Promise((r) => setTimeout(r, 2000)); // time for any duplicate to arrive
    const delivered = await stored();
    expect(delivered).toHaveLength(30);
    expect(new Set(delivered.map((a) => a.fields?.["str::email"])).size).toBe(30);
  });
});
