/**
 * What Ortto's answers cost: after a 429, an outage or a refused pack the queue sends full
 * requests, and a run of 4xx answers never takes the relay near Ortto's ban (15 bad requests in
 * 15 s; a refused key: refused-key.test.ts). The emulator answers as Ortto documents, with injected faults.
 */
import { beforeEach, describe, expect, it, vi } from "vitest";
import {
  clearDeadLetters,
  deadLetters,
  type EmulatorRequest,
  emulator,
  eventually,
  isClientError,
  mostInWindow,
  postWith,
  taggedEvent,
} from "./helpers.ts";

const stored = async () => (await emulator.activities()).activities;

/** One page batch of one activity each, through the queue (DELIVERY=queue). */
async function queueBacklog(tag: string, n: number) {
  for (let i = 0; i < n; i++) {
    const res = await postWith({ DELIVERY: "queue" }, { activities: [taggedEvent(tag, i)] });
    expect(res.status).toBe(202);
  }
}

beforeEach(async () => {
  vi.spyOn(console, "log").mockImplementation(() => {});
  await emulator.reset();
  await clearDeadLetters();
});

describe("after a transient failure the queue sends full requests", () => {
  it("re-packs a 100-message backlog after one 429 into at most 12 requests, none inside the pause", { timeout: 60_000 }, async () => {
    // Longer than a consumer could sit out inside one invocation.
    await emulator.faults({ failNext: 1, statuses: [429], tryInSeconds: 6 });
    await queueBacklog("rl", 100);
    const delivered = await eventually(stored, (a) => a.length >= 100);
    expect(new Set(delivered.map((a) => a.key)).size).toBe(100);
    const log = await emulator.requests();
    const limited = log.filter((r) => r.status === 429);
    expect(limited).toHaveLength(1);
    const pauseEnds = Date.parse((limited[0] as EmulatorRequest).received_at) + 6000;
    const after = log.filter((r) => r.status !== 429);
    console.info(`one 429 on a 100-message backlog: ${log.length} upstream requests`);
    expect(log.length).toBeLessThanOrEqual(12);
    for (const r of after) expect(Date.parse(r.received_at)).toBeGreaterThanOrEqual(pauseEnds - 5);
  });

  it("re-packs a 100-message backlog after an outage into at most 12 requests", { timeout: 60_000 }, async () => {
    await emulator.faults({ downUntil: Date.now() + 1500 });
    await queueBacklog("down", 100);
    const delivered = await eventually(stored, (a) => a.length >= 100);
    expect(new Set(delivered.map((a) => a.key)).size).toBe(100);
    const log = await emulator.requests();
    console.info(`an outage on a 100-message backlog: ${log.length} upstream requests`);
    expect(log.length).toBeLessThanOrEqual(12);
    expect(log.filter((r) => r.status === 200).every((r) => (r.body.activities?.length ?? 0) > 1)).toBe(true);
  });

  it("re-packs a 100-message backlog after an outage longer than three tries: one message probes alone, the rest goes packed", {
    timeout: 60_000,
  }, async () => {
    // Down for more tries than a message may fail before it travels alone (retries every ~1 s here):
    // until the backlog has failed more than three times, however long that takes on a loaded machine.
    await emulator.faults({ downUntil: Date.now() + 600_000 });
    await queueBacklog("longdown", 100);
    await eventually(emulator.requests, (log) => log.filter((r) => r.status === 503).length >= 4);
    await emulator.faults({});
    const delivered = await eventually(stored, (a) => a.length >= 100);
    expect(new Set(delivered.map((a) => a.key)).size).toBe(100);
    const log = await emulator.requests();
    const accepted = log.filter((r) => r.status === 200);
    console.info(`a long outage on a 100-message backlog: ${log.length} upstream requests, ${accepted.length} answered 200`);
    // At most the probe travels alone; while Ortto was down each try cost one request.
    expect(accepted.filter((r) => (r.body.activities?.length ?? 0) === 1).length).toBeLessThanOrEqual(1);
    expect(accepted.length).toBeLessThanOrEqual(4);
    expect(log.length).toBeLessThanOrEqual(20);
  });
  it("finds a message Ortto answers 500 to among 100 by halves after three tries: its 99 pack-mates are delivered in a few requests", {
    timeout: 60_000,
  }, async () => {
    await emulator.faults({ failKeys: ["choke-42"], statuses: [500] });
    await queueBacklog("choke", 100);
    const delivered = await eventually(stored, (a) => a.length >= 99);
    expect(new Set(delivered.map((a) => a.key)).size).toBe(99);
    const log = await emulator.requests();
    const accepted = log.filter((r) => r.status === 200);
    console.info(`a 500-poison among 100: ${accepted.length} requests answered 200, ${log.length} in all`);
    expect(accepted.length).toBeLessThanOrEqual(10);
    // Once Ortto takes it, it is delivered too (and leaves nothing on the queue for the next test).
    await emulator.faults({});
    expect(await eventually(stored, (a) => a.length >= 100)).toHaveLength(100);
  });
});

describe("a refused pack is narrowed in few requests", () => {
  it("uses Ortto's per-activity details: one refused activity in 100 costs two requests", { timeout: 60_000 }, async () => {
    await emulator.faults({ failKeys: ["bad-7"], statuses: [400], detailsPerActivity: true });
    await queueBacklog("bad", 100);
    const dead = await eventually(deadLetters, (d) => d.length >= 1);
    await eventually(stored, (a) => a.length >= 99);
    const log = await emulator.requests();
    console.info(`a refused pack with details: ${log.length} requests, ${log.filter((r) => r.status === 400).length} answered 400`);
    expect(dead.flatMap((d) => d.activities.map((a) => a.key))).toEqual(["bad-7"]);
    expect((await stored()).map((a) => a.key).sort()).toHaveLength(99);
    expect(log.filter((r) => r.status === 400).length).toBeLessThanOrEqual(2);
    expect(log.length).toBeLessThanOrEqual(4);
  });

  it("splits in halves when Ortto names no activity: one refused message in 100 costs at most 16 requests, at most 10 answered 4xx in 15 s", {
    timeout: 60_000,
  }, async () => {
    await emulator.faults({ failKeys: ["half-42"], statuses: [400] });
    await queueBacklog("half", 100);
    const dead = await eventually(deadLetters, (d) => d.length >= 1);
    await eventually(stored, (a) => a.length >= 99);
    const log = await emulator.requests();
    console.info(`a refused pack without details: ${log.length} requests, ${log.filter((r) => r.status === 400).length} answered 400`);
    expect(dead.flatMap((d) => d.activities.map((a) => a.key))).toEqual(["half-42"]);
    expect(await stored()).toHaveLength(99);
    expect(log.length).toBeLessThanOrEqual(16);
    expect(mostInWindow(log, isClientError)).toBeLessThanOrEqual(10);
  });
});
