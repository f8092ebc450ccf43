/**
 * Review findings on the account's request budget (ORTTO_MAX_RPS 10, vitest project "budget").
 * Turned into regression tests: each runs the attack as the reviewer did and asserts the promise.
 */
import { beforeEach, describe, expect, it, vi } from "vitest";
import { emulator, loggedIn, pacerStats, post } from "../worker/helpers.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const person = (i: number) =>
  loggedIn({
    key: `rv-${i}`,
    created: new Date().toISOString(),
    fields: { "str::first": `R${i}`, "str::email": `review${i}@example.com` },
  });

/** The account pacer's view. */
const account = () => pacerStats();

beforeEach(async () => {
  vi.spyOn(console, "log").mockImplementation(() => {});
  await emulator.reset();
});

describe("review: the account's request budget", () => {
  /**
   * HIGH. A 429 answered to an inline send pauses only the isolate that got it: noteUpstream()
   * stores the pause in `local.pauseReport`, which reaches the pacer only in sync(), and sync()
   * runs only from coalescing(), i.e. when this isolate receives its *next* page batch. Until
   * then the pacer keeps handing out slots: the queue consumer (here, the very batch the 429
   * just queued) and every other isolate keep hitting Ortto inside its try-in-seconds — the
   * behaviour that gets an account's key/IP throttled harder. Light traffic is exactly the case
   * where no next page batch comes soon.
   * Fix: after an inline 429, report it at once — `afterAnswer(c, pacer.pause(until))` (or call
   * sync() from noteUpstream's caller in the request path) — as the consumer does in paced.ts.
   */
  it("pauses every sender when an inline send is answered 429", async () => {
    await emulator.faults({ failRate: 1, statuses: [429], tryInSeconds: 20 });
    const res = await post({ activities: [person(1)] });
    expect(res.status).toBe(202);
    const inline = (await emulator.requests()).length;
    expect(inline).toBe(1);
    // No further page batch reaches this isolate. Within Ortto's 20 s nobody may ask it again.
    await sleep(4000);
    expect((await account()).paused_until).not.toBeNull();
    expect((await emulator.requests()).length).toBe(inline);
  }, 30_000);
});
