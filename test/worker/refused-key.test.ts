/**
 * A key Ortto refuses: the relay queues every page batch and probes Ortto with one request at a
 * time, never near Ortto's ban (15 bad requests in 15 s), and delivers all once the key works. A
 * file of its own (a workerd, a pacer of its own): after ortto-answers.test.ts's refused packs, it
 * would first wait out their 15 s window of 4xx answers.
 */
import { beforeEach, describe, expect, it, vi } from "vitest";
import { clearDeadLetters, emulator, eventually, healthDetails, isClientError, mostInWindow, postWith, taggedEvent } from "./helpers.ts";

const stored = async () => (await emulator.activities()).activities;

beforeEach(async () => {
  vi.spyOn(console, "log").mockImplementation(() => {});
  await emulator.reset();
  await clearDeadLetters();
});

describe("a key Ortto refuses", () => {
  it("keeps a wrong key to at most 10 refused requests in 15 s, queues every page batch, and delivers all once the key works", {
    timeout: 60_000,
  }, async () => {
    await emulator.faults({ refuseKey: 401 });
    const lines: string[] = [];
    vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    for (let i = 0; i < 30; i++) {
      const res = await postWith({}, { activities: [taggedEvent("key", i)] });
      // Never a silent 2xx: the page is told nothing was forwarded yet.
      expect(res.status).toBe(202);
      expect(res.headers.get("X-Relay-Outcome")).toBe("queued");
      expect(await res.json()).toEqual({ activities: [{ status: "queued", person_status: "queued" }] });
    }
    // The circuit probes one request at a time, backing off: wait for a refused probe.
    await eventually(emulator.requests, (log) => log.filter((r) => r.status === 401).length >= 2);
    const health = await healthDetails<{ circuits: Record<string, { reason: string }>; sites: Record<string, { key_refused?: string }> }>();
    expect(health.circuits.default?.reason).toBe("Ortto refuses this site's key");
    expect(health.sites.default?.key_refused).toBe("Ortto refuses this site's key");
    expect(lines.some((l) => l.includes("Ortto refuses this site's key"))).toBe(true);

    await emulator.faults({});
    const delivered = await eventually(stored, (a) => a.length >= 30);
    expect(new Set(delivered.map((a) => a.key)).size).toBe(30);
    const log = await emulator.requests();
    const refused = log.filter((r) => r.status === 401).length;
    console.info(`a wrong key, 30 page batches: ${refused} answered 401, ${log.length} requests in all`);
    expect(mostInWindow(log, isClientError)).toBeLessThanOrEqual(10);
    expect((await healthDetails<{ circuits: Record<string, unknown> }>()).circuits).toEqual({});
  });
});
