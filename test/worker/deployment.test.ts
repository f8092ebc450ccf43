/** What a production deployment depends on: a first-party path prefix, and vars checked at start. */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { RELAY_JS } from "../../snippet/dist/relay-asset.ts";
import type { DeliveryMessage } from "../../worker/delivery/messages.ts";
import worker from "../../worker/index.ts";
import { emulator, loggedIn, ORIGIN, postInit, postWith, RELAY } from "./helpers.ts";

const relay = (path: string, init?: RequestInit) => exports.default.fetch(`${RELAY}${path}`, init);

beforeEach(async () => {
  await emulator.reset();
});

describe("the relay under a path prefix (a route such as shop.example/r/*)", () => {
  for (const prefix of ["/r", "/t/relay"]) {
    it(`serves ${prefix}/relay.js as /relay.js`, async () => {
      const res = await relay(`${prefix}/relay.js`, { headers: { "Accept-Encoding": "identity" } });
      expect(res.status).toBe(200);
      expect(res.headers.get("access-control-allow-origin")).toBe("*");
      expect(await res.text()).toBe(RELAY_JS);
    });

    it(`forwards POST ${prefix}/v1/activities/create with the allowed origin's CORS headers`, async () => {
      const res = await relay(`${prefix}/v1/activities/create`, postInit({ activities: [loggedIn()] }));
      expect(res.status).toBe(200);
      expect(res.headers.get("access-control-allow-origin")).toBe(ORIGIN);
      expect(res.headers.get("access-control-expose-headers")).toContain("Date");
      expect((await emulator.activities()).activities).toHaveLength(1);
    });

    it(`answers the preflight of ${prefix}/v1/activities/create for an allowed origin only`, async () => {
      const preflight = (origin: string) =>
        relay(`${prefix}/v1/activities/create`, {
          method: "OPTIONS",
          headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type" },
        });
      const allowed = await preflight(ORIGIN);
      expect(allowed.status).toBe(204);
      expect(allowed.headers.get("access-control-allow-origin")).toBe(ORIGIN);
      expect(allowed.headers.get("access-control-allow-methods")).toContain("POST");
      expect((await preflight("https://evil.example")).headers.get("access-control-allow-origin")).toBeNull();
    });

    it(`serves ${prefix}/healthz`, async () => {
      const res = await relay(`${prefix}/healthz`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: "ok" });
    });

    it(`refuses under ${prefix} as at the root: a foreign origin is a 403 naming headers.origin`, async () => {
      const res = await relay(`${prefix}/v1/activities/create`, postInit({ activities: [loggedIn()] }, { origin: "https://evil.example" }));
      expect(res.status).toBe(403);
      expect(((await res.json()) as { details: unknown[] }).details).toEqual([{ path: "headers.origin", message: expect.any(String) }]);
    });
  }

  it("answers 404 in the relay's envelope for a path that ends in none of its endpoints", async () => {
    for (const path of ["/r/v1/other", "/r/relay.js/x", "/r/", "/relay.jsx"]) {
      const res = await relay(path);
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ code: 404 });
    }
  });
});

describe("vars checked at start", () => {
  const withVars = (vars: Record<string, string>, path = "/v1/activities/create", init = postInit({ activities: [loggedIn()] })) =>
    worker.fetch(new Request(`${RELAY}${path}`, init), { ...env, ...vars });

  it("answers 503 naming ORTTO_REGION and its accepted values, and forwards nothing, when the region is misspelt", async () => {
    const res = await withVars({ ORTTO_REGION: "europe" });
    expect(res.status).toBe(503);
    const body = (await res.json()) as { error: string; details: unknown[] };
    expect(body.error).toBe("The relay's configuration is invalid: ORTTO_REGION must be one of us, au, eu");
    expect(body.details).toEqual([{ path: "ORTTO_REGION", message: "must be one of us, au, eu" }]);
    expect((await emulator.requests()).length).toBe(0);
  });

  it("names every wrong var at once, on every route that reads them, never the key", async () => {
    for (const path of ["/healthz", "/r/healthz", "/r/v1/activities/create", "/r/nowhere"]) {
      const res = await withVars(
        { GEO_MODE: "edges", DELIVERY: "queued", ORTTO_MAX_RPS: "ten" },
        path,
        path.endsWith("create") ? postInit({ activities: [loggedIn()] }) : undefined,
      );
      expect(res.status).toBe(503);
      const text = await res.text();
      expect(text).not.toContain(env.ORTTO_API_KEY as string);
      expect(JSON.parse(text).details.map((d: { path: string }) => d.path)).toEqual(["GEO_MODE", "DELIVERY", "ORTTO_MAX_RPS"]);
    }
    expect((await emulator.requests()).length).toBe(0);
  });

  it("serves relay.js while the vars are invalid, so that pages load it and keep their events until the relay is fixed", async () => {
    for (const path of ["/relay.js", "/r/relay.js"]) {
      const res = await withVars({ ORTTO_REGION: "europe" }, path, { headers: { "Accept-Encoding": "identity" } });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe(RELAY_JS);
    }
  });

  it("uses a var written unquoted in wrangler.toml (a JSON number), rather than its default", async () => {
    // The settings in force are /healthz's details, the server token's to read.
    const res = await worker.fetch(new Request(`${RELAY}/healthz`, { headers: { Authorization: "Bearer vars-token" } }), {
      ...env,
      SERVER_TOKEN: "vars-token",
      ORTTO_MAX_RPS: 30,
      CONTACT_ACTIVITY_LIMIT: 20,
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ limits: { contact_activity_per_day: 20 }, budget: { max_rps: 30 } });
  });

  /** A queue binding that records what is sent to it, and with what delay. */
  function recordingQueue() {
    const sent: { bodies: unknown[]; delaySeconds?: number }[] = [];
    const queue = {
      send: async () => {},
      sendBatch: async (messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions) =>
        void sent.push({ bodies: [...messages].map((m) => m.body), delaySeconds: options?.delaySeconds }),
    } as unknown as Queue;
    return { queue, sent };
  }

  it("holds a delivery batch while the vars are invalid as a new message, unsent, never spending its retries toward the dead-letter queue", async () => {
    const message = { v: 1, request_id: "r1", activities: [loggedIn()] } as DeliveryMessage;
    // Its last try: a retry now would dead-letter it.
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
      { id: "m1", timestamp: new Date(), attempts: 30, body: message },
    ]);
    const delivery = recordingQueue();
    const deadLetters = recordingQueue();
    const ctx = createExecutionContext();
    await worker.queue(batch, { ...env, ORTTO_REGION: "europe", DELIVERY_QUEUE: delivery.queue, DEAD_LETTERS: deadLetters.queue });
    const result = await getQueueResult(batch, ctx);
    expect(result.retryBatch.retry).toBe(false);
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks).toEqual(["m1"]);
    expect(delivery.sent).toEqual([{ bodies: [message], delaySeconds: 600 }]);
    expect(deadLetters.sent).toEqual([]);
    expect((await emulator.requests()).length).toBe(0);
  });

  it("retries a held message, rather than acknowledge it, when the queue cannot take it back", async () => {
    const message = { v: 1, request_id: "r3", activities: [loggedIn()] } as DeliveryMessage;
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
      { id: "m3", timestamp: new Date(), attempts: 1, body: message },
    ]);
    const failing = {
      sendBatch: async () => {
        throw new Error("Queue sendBatch failed");
      },
    } as unknown as Queue;
    const ctx = createExecutionContext();
    await worker.queue(batch, { ...env, ORTTO_REGION: "europe", DELIVERY_QUEUE: failing });
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((m: { msgId: string }) => m.msgId)).toEqual(["m3"]);
  });

  it("keeps dead letters in the dead-letter queue while the vars are invalid during a replay, rather than let the replay consumer's retries delete them", async () => {
    const letter = { v: 1, request_id: "r2", activities: [loggedIn()], dead_reason: "Ortto refused" } as DeliveryMessage;
    const batch = createMessageBatch<DeliveryMessage>(env.DEAD_LETTER_QUEUE, [
      { id: "d1", timestamp: new Date(), attempts: 3, body: letter },
    ]);
    const delivery = recordingQueue();
    const deadLetters = recordingQueue();
    const ctx = createExecutionContext();
    await worker.queue(batch, { ...env, GEO_MODE: "edges", DELIVERY_QUEUE: delivery.queue, DEAD_LETTERS: deadLetters.queue });
    const result = await getQueueResult(batch, ctx);
    expect(result.retryBatch.retry).toBe(false);
    expect(result.retryMessages).toEqual([]);
    expect(result.explicitAcks).toEqual(["d1"]);
    expect(deadLetters.sent).toEqual([{ bodies: [letter], delaySeconds: 600 }]);
    expect(delivery.sent).toEqual([]);
    expect((await emulator.requests()).length).toBe(0);
  });
});

describe("observability", () => {
  /**
   * Posts `activities` under a path prefix with the log lines and Analytics Engine points captured:
   * the answer's status, its request's log line (written after the answer) and every point.
   */
  async function postLogged(activities: unknown[]) {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    const points: AnalyticsEngineDataPoint[] = [];
    const RELAY_EVENTS = { writeDataPoint: (point: AnalyticsEngineDataPoint) => void points.push(point) };
    try {
      const res = await worker.fetch(new Request(`${RELAY}/r/v1/activities/create`, postInit({ activities })), { ...env, RELAY_EVENTS });
      const id = res.headers.get("x-request-id");
      const line = await vi.waitFor(() => {
        const found = lines.find((l) => l.includes(`"request_id":"${id}"`));
        if (!found) throw new Error("no log line yet");
        return JSON.parse(found) as Record<string, unknown>;
      });
      await vi.waitFor(() => expect(points).toHaveLength(1));
      return { status: res.status, line, points };
    } finally {
      spy.mockRestore();
    }
  }

  it("logs a refused request's paths, never its values, and counts them by field in Analytics Engine", async () => {
    const wrong = { ...loggedIn(), attributes: { accountOwner: "yes-secret-value", paymentPlan: 7 } };
    const { status, line, points } = await postLogged([wrong, wrong]);
    expect(status).toBe(400);
    expect(line.reason).toBe("schema");
    expect(line.paths).toEqual(expect.arrayContaining(["activities.1.attributes.accountOwner"]));
    expect(JSON.stringify(line)).not.toContain("yes-secret-value");
    expect(points[0]?.blobs?.[3]).toContain("activities.*.attributes.accountOwner");
    expect(points[0]?.blobs?.[3]).not.toContain("activities.1.");
  });

  it("logs a batch taken in part with the refused activities' count and paths, never their values", async () => {
    const wrong = { ...loggedIn(), attributes: { accountOwner: "yes-secret-value" } };
    const { status, line, points } = await postLogged([loggedIn(), wrong]);
    expect(status).toBe(207);
    expect(line).toMatchObject({ refused: 1, forwarded: 1, paths: ["activities.1.attributes.accountOwner"] });
    expect(JSON.stringify(line)).not.toContain("yes-secret-value");
    expect(points[0]?.blobs?.[3]).toBe("activities.*.attributes.accountOwner");
  });

  it("shows a refused key that is no identifier (an address typed as a key) as ? in the log line and Analytics Engine, never the key", async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    try {
      for (const [key, logged] of [
        ["jane.doe@example.com", 'activities.0.attributes."?"'],
        ["jo@localhost", "activities.0.attributes.?"],
        ["first name", 'activities.0.attributes."?"'],
      ] as const) {
        const points: AnalyticsEngineDataPoint[] = [];
        const RELAY_EVENTS = { writeDataPoint: (point: AnalyticsEngineDataPoint) => void points.push(point) };
        const wrong = { ...loggedIn(), attributes: { [key]: true } };
        const res = await worker.fetch(new Request(`${RELAY}/v1/activities/create`, postInit({ activities: [wrong] })), {
          ...env,
          RELAY_EVENTS,
        });
        expect(res.status).toBe(400);
        // The sender's own answer still names what it sent.
        expect(await res.text()).toContain(key);
        const id = res.headers.get("x-request-id");
        const line = await vi.waitFor(() => {
          const found = lines.find((l) => l.includes(`"request_id":"${id}"`));
          if (!found) throw new Error("no log line yet");
          return found;
        });
        await vi.waitFor(() => expect(points).toHaveLength(1));
        expect(line).not.toContain(key);
        expect(JSON.stringify(points[0])).not.toContain(key);
        expect(JSON.parse(line).paths).toEqual([logged]);
      }
    } finally {
      spy.mockRestore();
    }
  });

  it("counts activities the queue consumer delivers, per site, beside the request path's points", async () => {
    const points: AnalyticsEngineDataPoint[] = [];
    const RELAY_EVENTS = { writeDataPoint: (point: AnalyticsEngineDataPoint) => void points.push(point) };
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
      {
        id: "d1",
        timestamp: new Date(),
        attempts: 1,
        body: { v: 1, request_id: "d1", activities: [loggedIn(), loggedIn()] } as DeliveryMessage,
      },
    ]);
    const ctx = createExecutionContext();
    await worker.queue(batch, { ...env, RELAY_EVENTS });
    expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["d1"]);
    expect(points.map((p) => [p.indexes?.[0], p.blobs?.[0], p.doubles])).toEqual([["default", "delivered", [2, 2, 0]]]);
  });
});

describe("X-Relay-Dry-Run: 1 (npm run smoke)", () => {
  const server = { SERVER_TOKEN: "dry-run-token" };
  const dry = { Authorization: "Bearer dry-run-token", "X-Relay-Dry-Run": "1" };

  it("answers a trusted server with what would be sent, validated and enriched, and sends nothing", async () => {
    const res = await postWith(server, { activities: [loggedIn()] }, { origin: null, contentType: "application/json", headers: dry });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { dry_run: boolean; upstream: string; activities: { key?: string; created?: string }[] };
    expect(body).toMatchObject({ dry_run: true, upstream: "ortto.test", delivery: "inline", site: "default" });
    expect(body.activities[0]).toMatchObject({ activity_id: "act:cm:logged-in", key: expect.any(String), created: expect.any(String) });
    expect(JSON.stringify(body)).not.toContain(env.ORTTO_API_KEY as string);
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("refuses an invalid activity in a dry run as for real: 400 naming the field", async () => {
    const wrong = { ...loggedIn(), attributes: { accountOwner: "yes" } };
    const res = await postWith(server, { activities: [wrong] }, { origin: null, contentType: "application/json", headers: dry });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { details: { path: string }[] }).details[0]?.path).toBe("activities.0.attributes.accountOwner");
  });

  it("refuses a dry run without a server token, or with another value: 400 naming the header, nothing sent", async () => {
    for (const [headers, options] of [
      [{ "X-Relay-Dry-Run": "1" }, {}],
      [{ ...dry, "X-Relay-Dry-Run": "true" }, { origin: null }],
    ] as const) {
      const res = await postWith(server, { activities: [loggedIn()] }, { ...options, headers });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { details: unknown[] }).details).toEqual([
        { path: "headers.x-relay-dry-run", message: "expected 1, with a server token" },
      ]);
    }
    expect(await emulator.requests()).toHaveLength(0);
  });
});
