/**
 * A message that keeps failing leaves the delivery queue for the dead-letter queue once its retries
 * are spent, through the real queues of Miniflare. This file runs in a project of its own
 * (vitest.config.ts, `worker-retries`) whose delivery queue retries a message 4 times, not 14 as
 * the other workerd files' do: each retry waits a second at least, and the behaviour is the same at
 * any count past the 3 after which a failing pack is probed.
 */
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { clearDeadLetters, deadLetters, emulator, eventually, loggedIn } from "./helpers.ts";

const stored = async () => (await emulator.activities()).activities;

beforeEach(async () => {
  await emulator.reset();
  await clearDeadLetters();
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("the queue consumer", () => {
  it("moves a message that keeps failing to the dead-letter queue after its retries, and delivers the rest of its batch", async () => {
    // From its 4th attempt a failing pack is probed with one message at random (worker/delivery/consumer.ts
    // `deliverProbing`): the first, here, so that the good ones go at the 4th attempt, not at a lucky one.
    vi.spyOn(Math, "random").mockReturnValue(0);
    await emulator.faults({ failKeys: ["poison"], statuses: [500] });
    const now = new Date().toISOString();
    await env.DELIVERY_QUEUE.sendBatch(
      ["good-1", "poison", "good-2"].map((key) => ({
        body: { v: 1, request_id: key, activities: [loggedIn({ key, created: now })] },
        contentType: "json" as const,
      })),
    );
    const delivered = await eventually(stored, (a) => a.length === 2);
    expect(delivered.map((a) => a.key).sort()).toEqual(["good-1", "good-2"]);
    const dead = await eventually(deadLetters, (d) => d.length === 1, 90_000);
    expect(dead[0]?.activities[0]).toMatchObject({ key: "poison" });
    // Probed: the 4th attempt sent good-1 alone, then the rest split in halves.
    const sent = (await emulator.requests()).map((r) => (r.body.activities ?? []).map((a) => a.key).join("+"));
    expect(sent.slice(3, 5)).toEqual(["good-1", "poison+good-2"]);
  }, 120_000);
});
