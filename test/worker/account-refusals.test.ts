/**
 * The account's 4xx window and per-site circuits as every sender must keep them: when the pacer
 * cannot be asked (no binding, or the Durable Object unreachable) each isolate still keeps its
 * own requests under Ortto's ban (15 bad requests in 15 s); an isolate that never synced learns
 * them from its slot; a circuit closes when Ortto shows it took the key.
 */
import { createMessageBatch } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { consumeQueue } from "../../worker/delivery/consumer.ts";
import type { DeliveryMessage } from "../../worker/delivery/messages.ts";
import { type Isolate, newIsolate } from "../../worker/isolate.ts";
import { emulator, isClientError, loggedIn, mostInWindow, postWith } from "./helpers.ts";

interface LoggedRequest {
  received_at: string;
  status: number;
}
const requests = async () => (await (await fetch("http://ortto.test/_emulator/requests")).json()) as LoggedRequest[];
/** A pacer binding whose object never answers (every call rejects), as when the Durable Object is unavailable. */
const unreachablePacer = {
  idFromName: () => ({}),
  get: () =>
    new Proxy({}, { get: (_t, prop) => (prop === "then" ? undefined : () => Promise.reject(new Error("Durable Object unavailable"))) }),
};

/** A queue that records what it is sent (held messages, dead letters) instead of delivering it. */
function recordingQueue() {
  const sent: DeliveryMessage[] = [];
  const queue = {
    send: async (body: DeliveryMessage) => void sent.push(body),
    sendBatch: async (messages: MessageSendRequest<DeliveryMessage>[]) => void sent.push(...messages.map((m) => m.body)),
  };
  return { sent, queue: queue as unknown as Queue<DeliveryMessage> };
}

const keyed = (key: string) => loggedIn({ key, created: new Date().toISOString(), fields: { "str::email": `${key}@example.com` } });

/** Each test's isolate: it has heard nothing of the account's window or circuits. */
let isolate: Isolate;

beforeEach(async () => {
  vi.spyOn(console, "log").mockImplementation(() => {});
  isolate = newIsolate();
  await emulator.reset();
});

describe("without the account pacer, requests Ortto answers 4xx stay under its ban", () => {
  it("narrowing a pack Ortto refuses whole keeps to 10 refused requests in 15 s when the pacer is unreachable, and loses no message", async () => {
    // A schema drift: Ortto answers 400 to every request.
    await emulator.faults({ failRate: 1, statuses: [400] });
    const keys = Array.from({ length: 40 }, (_, i) => `drift-${i}`);
    const batch = createMessageBatch<DeliveryMessage>(
      "ortto-relay-delivery",
      keys.map((key, i) => ({
        id: `m${i}`,
        timestamp: new Date(),
        attempts: 1,
        body: { v: 1, request_id: `r${i}`, activities: [keyed(key)] },
      })),
    );
    const delivery = recordingQueue();
    const dead = recordingQueue();
    await consumeQueue(
      batch,
      {
        ...env,
        UPSTREAM_PACER: unreachablePacer,
        DELIVERY_QUEUE: delivery.queue,
        DEAD_LETTERS: dead.queue,
      } as unknown as typeof env,
      isolate,
    );
    const log = await requests();
    console.info(
      `a pack refused whole, pacer unreachable: ${log.length} requests, ${log.filter((r) => isClientError(r.status)).length} 4xx`,
    );
    expect(mostInWindow(log)).toBeLessThanOrEqual(10);
    // Every message is held (back on the queue) or dead-lettered: none lost.
    const accounted = [...delivery.sent, ...dead.sent].flatMap((m) => m.activities.map((a) => a.key));
    expect(new Set(accounted)).toEqual(new Set(keys));
  });

  it("page batches keep to 10 refused requests in 15 s without a pacer binding; the rest are queued", async () => {
    await emulator.faults({ failRate: 1, statuses: [400] });
    const delivery = recordingQueue();
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await postWith(
        { UPSTREAM_PACER: undefined, DELIVERY_QUEUE: delivery.queue },
        { activities: [keyed(`page-${i}`)] },
        { isolate },
      );
      statuses.push(res.status);
    }
    const log = await requests();
    expect(mostInWindow(log)).toBeLessThanOrEqual(10);
    // Each batch was answered Ortto's 400 or queued (202): never a 5xx, never dropped.
    expect(statuses.every((s) => s === 400 || s === 202)).toBe(true);
    expect(statuses.filter((s) => s === 202).length).toBe(delivery.sent.flatMap((m) => m.activities).length);
  });
});

const pacer = () => {
  const ns = (env as unknown as { UPSTREAM_PACER: DurableObjectNamespace<import("../../worker/budget/pacer.ts").UpstreamPacer> })
    .UPSTREAM_PACER;
  return ns.get(ns.idFromName("account"));
};

describe("a consumer in an isolate that has heard nothing yet keeps the account's window and circuits", () => {
  it("holds a pack, without a request, while the account's window of 4xx answers is full", async () => {
    await emulator.faults({ failRate: 1, statuses: [400] });
    // Ten requests of other isolates were answered 4xx just now: the window is full.
    for (let i = 0; i < 10; i++) await pacer().refused({ status: 400 });
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
      { id: "w1", timestamp: new Date(), attempts: 1, body: { v: 1, request_id: "w1", activities: [keyed("window-1")] } },
    ]);
    const delivery = recordingQueue();
    await consumeQueue(batch, { ...env, DELIVERY_QUEUE: delivery.queue } as unknown as typeof env, isolate);
    expect(await requests()).toHaveLength(0);
    expect(delivery.sent.flatMap((m) => m.activities.map((a) => a.key))).toEqual(["window-1"]);
  });

  it("holds a site's pack, without a request, while the pacer's circuit for its key is open", async () => {
    await emulator.faults({ refuseKey: 401 });
    await pacer().refused({ status: 401, site: "default" });
    // Another sender holds the circuit's probe (for a minute): this consumer may not send one.
    for (let probe = await pacer().probe("default", 60_000); !("probe" in probe); probe = await pacer().probe("default", 60_000)) {
      await new Promise((r) => setTimeout(r, 100));
    }
    try {
      const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
        { id: "c1", timestamp: new Date(), attempts: 1, body: { v: 1, request_id: "c1", activities: [keyed("circuit-1")] } },
      ]);
      const delivery = recordingQueue();
      await consumeQueue(batch, { ...env, DELIVERY_QUEUE: delivery.queue } as unknown as typeof env, isolate);
      expect(await requests()).toHaveLength(0);
      expect(delivery.sent.flatMap((m) => m.activities.map((a) => a.key))).toEqual(["circuit-1"]);
    } finally {
      await pacer().succeeded({ site: "default" });
    }
  });
});

describe("a site's circuit", () => {
  it("closes when Ortto answers a request of the site 400: it took the key, and refused only the activities", async () => {
    await pacer().refused({ status: 401, site: "default" });
    expect((await pacer().stats()).key_refused.map((c) => c.site)).toEqual(["default"]);
    await pacer().refused({ status: 400, site: "default" });
    expect((await pacer().stats()).key_refused).toEqual([]);
  });
});

describe("fresh isolates and a key Ortto refuses", () => {
  it("keeps 20 fresh isolates to at most 10 requests answered 401 in 15 s: each asks the pacer before its first inline send", async () => {
    await emulator.faults({ refuseKey: 401 });
    try {
      for (let i = 0; i < 20; i++) {
        // A fresh isolate: it has heard nothing of the account's window or circuits.
        const res = await postWith({}, { activities: [keyed(`fresh-${i}`)] }, { isolate: newIsolate() });
        // Never a silent 2xx: the page is told nothing was forwarded yet.
        expect(res.status).toBe(202);
        expect(res.headers.get("X-Relay-Outcome")).toBe("queued");
      }
      expect(mostInWindow(await requests())).toBeLessThanOrEqual(10);
    } finally {
      await pacer().succeeded({ site: "default" });
    }
  });
});
