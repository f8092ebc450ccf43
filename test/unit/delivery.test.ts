import { describe, expect, it } from "vitest";
import { MAX_MESSAGE_BYTES, retryDelaySeconds, toMessages } from "../../worker/delivery/messages.ts";

describe("retryDelaySeconds", () => {
  it("doubles from the base with each attempt, jittered within the upper half", () => {
    for (const [attempts, low, high] of [
      [1, 3, 5],
      [2, 5, 10],
      [3, 10, 20],
      [5, 40, 80],
    ] as const) {
      expect(retryDelaySeconds(attempts, 5, 0, 3600, () => 0)).toBe(low);
      expect(retryDelaySeconds(attempts, 5, 0, 3600, () => 0.999999)).toBe(high);
      for (let i = 0; i < 50; i++) {
        const d = retryDelaySeconds(attempts, 5, 0);
        expect(d).toBeGreaterThanOrEqual(low);
        expect(d).toBeLessThanOrEqual(high);
      }
    }
  });

  it("is capped by the maximum, an hour by default", () => {
    expect(retryDelaySeconds(30, 5, 0, 3600, () => 0.999999)).toBe(3600);
    expect(retryDelaySeconds(30, 1, 0, 2, () => 0.999999)).toBe(2);
  });

  it("never comes sooner than Ortto's try-in-seconds", () => {
    expect(retryDelaySeconds(1, 1, 10, 3600, () => 0)).toBe(10);
  });
});

describe("toMessages", () => {
  it("splits activities into messages under the 128 KB queue limit, keeping order and options", () => {
    const activity = (i: number) => ({
      activity_id: "act:cm:placed-order",
      key: `k${i}`,
      attributes: { "txt:cm:gift-message": "x".repeat(4000) },
    });
    const activities = Array.from({ length: 100 }, (_, i) => activity(i));
    const messages = toMessages("req-1", "shop", { async: true }, activities);
    expect(messages.length).toBeGreaterThan(3);
    for (const m of messages) {
      expect(new TextEncoder().encode(JSON.stringify(m)).length).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
      expect(m).toMatchObject({ v: 1, request_id: "req-1", site: "shop", async: true });
    }
    expect(messages.flatMap((m) => m.activities)).toEqual(activities);
  });
});
