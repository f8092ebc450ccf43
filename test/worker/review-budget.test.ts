/**
 * Findings of an adversarial review of the hardening, each turned into a regression test: the attack
 * as the reviewer ran it, and the behaviour now required (its severity and the fix on each).
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { MAX_AGE_MS } from "../../shared/activities.ts";
import { MAX_REPLAYS } from "../../worker/delivery/consumer.ts";
import type { DeliveryMessage } from "../../worker/delivery/messages.ts";
import worker from "../../worker/index.ts";
import { emulator, loggedIn, postWith } from "./helpers.ts";

const message = (id: string, activities: unknown[], attempts: number) => ({
  id,
  timestamp: new Date(),
  attempts,
  body: { v: 1, request_id: id, activities } as DeliveryMessage,
});

const deadLetters = async () => (await (await fetch("http://dead-letters.test/")).json()) as DeliveryMessage[];

async function eventually<T>(read: () => Promise<T>, check: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (check(value) || Date.now() > until) return value;
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeEach(async () => {
  vi.spyOn(console, "log").mockImplementation(() => {});
  await emulator.reset();
  await fetch("http://dead-letters.test/", { method: "DELETE" });
});

describe("review: hardening", () => {
  /**
   * MEDIUM. "Replaying never loops": replayDeadLetters keeps a message once body.replays reaches
   * MAX_REPLAYS. But an activity Ortto answers `"status": "failed"` (an unknown person_id, Ortto's
   * daily limit) is dead-lettered by deadLetterFailed through toMessages(), which builds fresh
   * messages and drops `replays` (and `key_waits`). So each replay of such a dead letter comes back
   * with replays reset to 0: while the replay consumer is attached it loops forever (replay →
   * Ortto request → failed → dead letter with no count → replay …), spending the account's budget
   * on a request Ortto will keep refusing and never settling in the dead-letter queue for a person.
   * Fix: carry `replays` (and key_waits) from the source message in deadLetterFailed (add them to
   * `from` and spread them into each new message), as deadLetter() and setAsideExpired() do.
   */
  it("keeps the replay count on activities Ortto answers failed", { timeout: 20_000 }, async () => {
    const unknownPerson = {
      activity_id: "act:cm:viewed-page",
      person_id: "0000000000000000000000ff",
      key: "ghost-replayed",
      created: new Date().toISOString(),
      attributes: {},
    };
    const m = message("replayed", [unknownPerson], 1);
    m.body.replays = MAX_REPLAYS;
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [m]);
    const ctx = createExecutionContext();
    await worker.queue(batch, env);
    await getQueueResult(batch, ctx);
    const dead = await eventually(deadLetters, (d) => d.length === 1);
    expect(dead).toHaveLength(1);
    expect(dead[0]?.dead_reason).toContain('status "failed"');
    // The next replay must keep it (replays >= MAX_REPLAYS); without the count it is replayed again.
    expect(dead[0]?.replays).toBe(MAX_REPLAYS);
  });
});

describe("review: crawler filter", () => {
  /**
   * LOW (ALLOW_HEADLESS is for test environments; a staging relay with it on is still public).
   * README: "verified bots and other bot user agents are still stopped". But with ALLOW_HEADLESS
   * crawlerVerdict() returns "not a crawler" for any user agent containing "headless" before isbot
   * runs, so a crawler whose user agent names itself *and* HeadlessChrome (common for rendering
   * crawlers, SEO tools and scrapers built on Puppeteer) passes and its activities are forwarded.
   * Fix: with allowHeadless, drop only the headless token and still ask isbot about the rest:
   * `isbot(allowHeadless ? agent.replace(/Headless(?=Chrome)/gi, "") : agent)`.
   */
  it("still stops a bot user agent that also says HeadlessChrome under ALLOW_HEADLESS", async () => {
    const agent =
      "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const res = await postWith(
      { ALLOW_HEADLESS: "true" },
      { activities: [loggedIn()] },
      { headers: { "User-Agent": agent, "Sec-Fetch-Mode": "cors" } },
    );
    expect(res.headers.get("X-Relay-Outcome")).toBe("bot");
    expect(await emulator.requests()).toHaveLength(0);
  });
});

describe("review: the 90-day edge", () => {
  /**
   * LOW. The edge accepts `created` up to exactly 90 days old (isRecent: >= now − MAX_AGE_MS), but
   * the consumer sets aside as expired anything older than 90 days minus one minute
   * (EXPIRY_MARGIN_MS) — before any delivery try. An activity accepted with 30 s to spare is
   * answered 202 "queued" (DELIVERY=queue, coalescing under load, or any inline failure) and goes
   * straight to the dead-letter queue as "expired while it waited", though Ortto would still have
   * taken it; replaying it only dead-letters it again. The page was told it was accepted.
   * Fix: validate at the edge with the same margin as the consumer (refuse created older than
   * 90 d − 60 s with a 400 naming the field), so what is answered "queued" can be delivered.
   */
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
