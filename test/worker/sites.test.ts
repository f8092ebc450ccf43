import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { DeliveryMessage } from "../../worker/delivery/messages.ts";
import worker from "../../worker/index.ts";
import { emulator, loggedIn, postWith } from "./helpers.ts";

// This file's relay serves two sites of its own besides the default one (ALLOWED_ORIGINS with
// ORTTO_API_KEY), as an operator would declare them in relay.config.ts.
vi.mock("../../relay.config.ts", async (importOriginal) =>
  (await import("./catalogue-mock.ts")).catalogueWith(importOriginal, {
    sites: [
      { name: "shop-a", origins: ["https://a.example", "https://*.a.example"], keySecret: "ORTTO_KEY_A" },
      { name: "blog-b", origins: ["https://b.example"], keySecret: "ORTTO_KEY_B", activities: ["act:cm:viewed-page"] },
    ],
  }),
);

const keys = { ORTTO_KEY_A: "key-of-site-a", ORTTO_KEY_B: "key-of-site-b" };
const view = () => ({
  activity_id: "act:cm:viewed-page",
  fields: { "str::email": `${crypto.randomUUID()}@example.com` },
  attributes: { "str:cm:page-url": "https://b.example/post" },
});

beforeEach(async () => {
  await emulator.reset();
});

describe("one deployment, several sites", () => {
  it("uses site A's key for site A's origins only", async () => {
    expect((await postWith(keys, { activities: [loggedIn()] }, { origin: "https://www.a.example" })).status).toBe(200);
    expect((await postWith(keys, { activities: [view()] }, { origin: "https://b.example" })).status).toBe(200);
    expect((await postWith(keys, { activities: [loggedIn()] }, { origin: "https://shop.example" })).status).toBe(200);
    const sent = (await emulator.requests()).map((r) => r.headers["x-api-key"]);
    expect(sent).toEqual(["key-of-site-a", "key-of-site-b", env.ORTTO_API_KEY]);
  });

  it("refuses an activity that a site has not enabled", async () => {
    const res = await postWith(keys, { activities: [loggedIn()] }, { origin: "https://b.example" });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      error: "Activity act:cm:logged-in is not enabled for site blog-b",
      details: [{ path: "activities.0.activity_id" }],
    });
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("answers 503 naming the site's secret when it is missing, never another site's key", async () => {
    const res = await postWith({ ORTTO_KEY_A: "key-of-site-a" }, { activities: [view()] }, { origin: "https://b.example" });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toContain("ORTTO_KEY_B");
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("delivers a queued message of a site with that site's key", async () => {
    const batch = createMessageBatch<DeliveryMessage>("ortto-relay-delivery", [
      {
        id: "m",
        timestamp: new Date(),
        attempts: 1,
        body: { v: 1, request_id: "r", site: "shop-a", activities: [loggedIn({ key: "k", created: new Date().toISOString() })] },
      },
    ]);
    await worker.queue(batch, { ...env, ...keys });
    expect((await getQueueResult(batch, createExecutionContext())).explicitAcks).toEqual(["m"]);
    expect((await emulator.requests()).map((r) => r.headers["x-api-key"])).toEqual(["key-of-site-a"]);
  });
});
