/**
 * An inline send answered 429 pauses every sender, the queue's consumer too. A file of its own (a
 * workerd, a pacer of its own): Ortto's 20 s here, and the 10 s after it in which page batches
 * coalesce, would hold up any test after it.
 */
import { beforeEach, describe, expect, it, vi } from "vitest";
import { emulator, eventually, healthDetails, loggedIn, pacerStats, post } from "../worker/helpers.ts";

/** Messages this isolate's queue consumer put back on the queue to wait out a pause (delivery/stats.ts). */
const held = async () => (await healthDetails<{ queue: { held: number } }>()).queue.held;

beforeEach(async () => {
  vi.spyOn(console, "log").mockImplementation(() => {});
  await emulator.reset();
});

describe("the account's request budget", () => {
  // An inline send's 429 reaches the account's pacer at once (afterAnswer), not with this isolate's
  // next page batch: with light traffic none may come soon, and the queue consumer and other
  // isolates would ask Ortto again inside its try-in-seconds.
  it("pauses every sender when an inline send is answered 429", async () => {
    await emulator.faults({ failRate: 1, statuses: [429], tryInSeconds: 20 });
    const heldBefore = await held();
    const res = await post({
      activities: [loggedIn({ key: "inline-429", created: new Date().toISOString(), fields: { "str::email": "inline429@example.com" } })],
    });
    expect(res.status).toBe(202);
    const inline = (await emulator.requests()).length;
    expect(inline).toBe(1);
    // No further page batch reaches this isolate. The queue's consumer has the message, and holds it
    // for Ortto's 20 s rather than ask Ortto again.
    await eventually(held, (n) => n > heldBefore);
    expect((await pacerStats()).paused_until).not.toBeNull();
    expect((await emulator.requests()).length).toBe(inline);
  }, 30_000);
});
