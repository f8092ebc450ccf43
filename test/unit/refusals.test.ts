import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KeyCircuits, MAX_REFUSALS, PROBE_FIRST_MS, PROBE_MAX_MS, REFUSAL_WINDOW_MS, RefusalWindow } from "../../worker/budget/refusals.ts";

const T0 = 1_700_000_000_000;

describe("the account's window of 4xx answers", () => {
  it("never lets more than MAX_REFUSALS requests be refused in any 15 s, however senders ask and settle", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ gap: fc.integer({ min: 0, max: 3000 }), refused: fc.boolean(), latency: fc.integer({ min: 0, max: 2000 }) }), {
          maxLength: 200,
        }),
        (steps) => {
          const window = new RefusalWindow();
          window.record(T0); // the first 4xx, before anyone knew of a window
          const refusedAt = [T0];
          let now = T0;
          for (const step of steps) {
            now += step.gap;
            const answer = window.admit(now, 6000);
            if (!("permit" in answer)) {
              expect(answer.retryAtMs).toBeGreaterThan(now);
              continue;
            }
            window.settle(answer.permit, step.refused, now + step.latency);
            if (step.refused) refusedAt.push(now + step.latency);
          }
          refusedAt.sort((a, b) => a - b);
          for (let i = 0, j = 0; j < refusedAt.length; j++) {
            while ((refusedAt[j] as number) - (refusedAt[i] as number) >= REFUSAL_WINDOW_MS) i++;
            expect(j - i + 1).toBeLessThanOrEqual(MAX_REFUSALS);
          }
        },
      ),
    );
  });

  it("closes 15 s after the last 4xx", () => {
    const window = new RefusalWindow();
    expect(window.openUntil(T0)).toBe(0);
    window.record(T0);
    expect(window.openUntil(T0 + 1)).toBe(T0 + REFUSAL_WINDOW_MS);
    expect(window.openUntil(T0 + REFUSAL_WINDOW_MS)).toBe(0);
  });
});

describe("a site's circuit for a refused key", () => {
  it("lets one probe through at a time, doubling the wait after each refused probe, and closes when the key works", () => {
    const circuits = new KeyCircuits();
    expect(circuits.probe("shop", T0, 6000)).toEqual({ closed: true });
    const first = circuits.refused("shop", 401, T0);
    expect(first).toBe(T0 + PROBE_FIRST_MS);
    expect(circuits.probe("shop", T0 + 10, 6000)).toEqual({ retryAtMs: first });
    expect(circuits.probe("shop", first, 6000)).toEqual({ probe: true });
    // A second sender while the probe is out waits.
    expect("retryAtMs" in circuits.probe("shop", first + 1, 6000)).toBe(true);
    const second = circuits.refused("shop", 401, first + 100);
    expect(second).toBe(first + 100 + 2 * PROBE_FIRST_MS);
    let now = second;
    for (let i = 0; i < 20; i++) {
      expect(circuits.probe("shop", now, 6000)).toEqual({ probe: true });
      now = circuits.refused("shop", 401, now);
    }
    expect(circuits.list()[0]?.next_probe_at).toBe(now);
    expect(now - (circuits.list()[0]?.since ?? 0)).toBeGreaterThan(PROBE_MAX_MS);
    circuits.works("shop");
    expect(circuits.probe("shop", now, 6000)).toEqual({ closed: true });
    expect(circuits.list()).toEqual([]);
  });

  it("backs off only after a refused probe: requests in flight when the key was refused keep the first probe a second away", () => {
    const circuits = new KeyCircuits();
    // Ten requests of the site were under way when Ortto refused the key: all ten come back 401.
    for (let i = 0; i < 10; i++) circuits.refused("shop", 401, T0 + i);
    expect(circuits.list()[0]?.next_probe_at).toBe(T0 + PROBE_FIRST_MS);
    expect(circuits.probe("shop", T0 + PROBE_FIRST_MS, 6000)).toEqual({ probe: true });
  });
});
