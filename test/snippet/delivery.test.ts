import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  backoff,
  FLUSH_MS,
  HEARTBEAT_MS,
  LEASE_MS,
  MAX_BATCH,
  MAX_BATCH_BYTES,
  MAX_QUEUE,
  MAX_RETRY_AFTER,
  STALE_MS,
  STORAGE_KEY,
} from "../../snippet/src/core.ts";
import { MemoryStorage, openPage, settle, URL_CREATE, wait } from "./helpers.ts";

const NOW = Date.parse("2026-11-27T06:00:00.000Z");

beforeEach(() => {
  vi.useFakeTimers({ now: NOW });
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/** A page whose visitor is already identified, so events go out at once. */
function identifiedPage(options: Parameters<typeof openPage>[0] = {}) {
  const page = openPage(options);
  page.relay("identify", { email: "chris@example.com" });
  return page;
}

describe("batching", () => {
  it("sends one text/plain keepalive POST of Ortto's body shape after the flush delay", async () => {
    const page = identifiedPage();
    page.relay("track", "logged-in", { "str:cm:payment-plan": "starter" });
    page.relay("track", "act:cm:placed-order", { "int:cm:item-count": 2 });
    await wait(FLUSH_MS - 1);
    expect(page.fetch).not.toHaveBeenCalled();
    await wait(1);
    expect(page.sent).toHaveLength(1);
    const [request] = page.sent;
    expect(request?.url).toBe(URL_CREATE);
    expect(request?.init).toMatchObject({ method: "POST", keepalive: true });
    // A string body is sent as text/plain: no headers, no preflight.
    expect(typeof request?.init.body).toBe("string");
    expect(request?.init.headers).toBeUndefined();
    expect(request?.body).toEqual({
      activities: [
        {
          activity_id: "act:cm:logged-in",
          key: expect.stringMatching(/^relay:[0-9a-f-]{36}\|1000000001$/),
          created: "2026-11-27T06:00:00.000Z",
          attributes: { "str:cm:payment-plan": "starter" },
          fields: { "str::email": "chris@example.com" },
        },
        {
          activity_id: "act:cm:placed-order",
          key: expect.any(String),
          created: "2026-11-27T06:00:00.000Z",
          attributes: { "int:cm:item-count": 2 },
          fields: { "str::email": "chris@example.com" },
        },
      ],
    });
    expect(request?.body.activities[0]?.key).not.toBe(request?.body.activities[1]?.key);
  });

  it(`sends at once when ${MAX_BATCH} events are waiting, and at most ${MAX_BATCH} per request`, async () => {
    const page = identifiedPage();
    for (let n = 0; n < MAX_BATCH + 3; n++) page.relay("track", "logged-in", { "int::v": n });
    // Not inside the call (O(1) per call): in a task of its own, at once.
    expect(page.sent).toHaveLength(0);
    await wait(0);
    expect(page.sent[0]?.body.activities).toHaveLength(MAX_BATCH);
    // The rest follow as soon as the first batch is through.
    expect(page.sent).toHaveLength(2);
    expect(page.sent[1]?.body.activities.map((a) => a.attributes?.["int::v"])).toEqual([10, 11, 12]);
  });

  it("fixes key and created at the call, and keeps them across retries", async () => {
    const page = identifiedPage();
    page.answers.push(503);
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    await vi.advanceTimersByTimeAsync(5000);
    expect(page.sent).toHaveLength(2);
    expect(page.sent[1]?.body.activities[0]?.key).toBe(page.sent[0]?.body.activities[0]?.key);
    expect(page.sent[1]?.body.activities[0]?.created).toBe("2026-11-27T06:00:00.000Z");
  });

  it("keeps every request body under keepalive's 64 KiB", async () => {
    const page = identifiedPage();
    // Ten events of ~15 kB (Ortto's per-activity limit is 16 kB): more than one request's worth.
    const big = "é".repeat(7000);
    for (let n = 0; n < MAX_BATCH; n++) page.relay("track", "placed-order", { "txt:cm:gift-message": big, "int::v": n });
    await settle();
    expect(page.sent.length).toBeGreaterThan(1);
    for (const request of page.sent) expect(new Blob([request.raw]).size).toBeLessThan(64 * 1024);
    expect(page.activities().map((a) => a.attributes?.["int::v"])).toEqual([...Array(MAX_BATCH).keys()]);
  });

  it("sends an identified visitor's events one request at a time", async () => {
    const page = identifiedPage();
    page.answers.push("hang");
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    page.relay("track", "placed-order");
    await wait(FLUSH_MS * 5);
    expect(page.sent).toHaveLength(1);
  });
});

describe("retries", () => {
  it("backs off exponentially from 1 s to a cap, with jitter between half and all of the step", () => {
    expect(backoff(1, 0)).toBe(1000);
    expect(backoff(2, 0)).toBe(2000);
    expect(backoff(3, 0)).toBe(4000);
    expect(backoff(7, 0)).toBe(64000);
    expect(backoff(30, 0)).toBe(64000);
    for (let n = 1; n < 12; n++) {
      for (const r of [0, 0.25, 0.5, 0.999999]) {
        const step = 1000 * 2 ** Math.min(n - 1, 6);
        expect(backoff(n, r)).toBeGreaterThanOrEqual(step);
        expect(backoff(n, r)).toBeLessThan(2 * step);
      }
    }
    // Math.random is the default jitter.
    vi.spyOn(Math, "random").mockReturnValue(0.5);
    expect(backoff(2)).toBe(3000);
  });

  it.each([500, 502, 503, 429, "network"] as const)("retries after %s, with growing waits, until it is through", async (answer) => {
    vi.spyOn(Math, "random").mockReturnValue(0);
    const page = identifiedPage();
    page.answers.push(answer, answer, answer);
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
    // 1st failure → 1 s, 2nd → 2 s, 3rd → 4 s.
    for (const [delay, count] of [
      [1000, 2],
      [2000, 3],
      [4000, 4],
    ] as const) {
      await wait(delay - 1);
      expect(page.sent).toHaveLength(count - 1);
      await wait(1);
      expect(page.sent).toHaveLength(count);
    }
    await wait(120_000);
    expect(page.sent).toHaveLength(4);
    expect(page.storage.state()?.q).toEqual([]);
    expect(page.storage.state()?.f).toBe(0);
  });

  it.each([
    [429, "60"],
    [429, "3600"],
    [503, "30"],
  ])("waits out the Retry-After of a %s (%s s) before retrying, however short its own backoff", async (status, retryAfter) => {
    vi.spyOn(Math, "random").mockReturnValue(0);
    const page = identifiedPage();
    page.answers.push({ status, retryAfter });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
    // New events, the browser coming back online: none of them sends before the time is up.
    page.relay("track", "placed-order");
    page.w.dispatchEvent(new page.w.Event("online"));
    await wait(+retryAfter * 1000 - 1);
    expect(page.sent).toHaveLength(1);
    await wait(1);
    expect(page.sent).toHaveLength(2);
    expect(page.activities().map((a) => a.activity_id)).toEqual(["act:cm:logged-in", "act:cm:logged-in", "act:cm:placed-order"]);
    expect(page.storage.state()?.q).toEqual([]);
  });

  it("honours Retry-After in the next page and in other tabs too", async () => {
    const storage = new MemoryStorage();
    const first = identifiedPage({ storage });
    first.answers.push({ status: 429, retryAfter: "60" });
    first.relay("track", "logged-in");
    await wait(FLUSH_MS);
    // The visitor moves on at once: the next page does not send before the minute is up.
    const second = openPage({ storage });
    second.relay("track", "placed-order");
    await wait(60_000 - 1);
    expect(first.sent.length + second.sent.length).toBe(1);
    await wait(1);
    const retried = [...first.sent, ...second.sent].slice(1).flatMap((s) => s.body.activities.map((a) => a.activity_id));
    expect(retried).toEqual(["act:cm:logged-in", "act:cm:placed-order"]);
    expect(storage.state()?.q).toEqual([]);
  });

  it("falls back to its own backoff when Retry-After is not a number of seconds", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0);
    const page = identifiedPage();
    page.answers.push({ status: 429, retryAfter: "Fri, 27 Nov 2026 07:00:00 GMT" });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    await wait(backoff(1, 0));
    expect(page.sent).toHaveLength(2);
  });

  it(`drops a batch refused with 429 and a Retry-After over an hour (Ortto's daily limit per contact), reporting it, and sends the events behind it`, async () => {
    const page = identifiedPage({ debug: true });
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    page.answers.push({ status: 429, retryAfter: String(MAX_RETRY_AFTER + 1) });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(warn).toHaveBeenCalledWith("relay:", 429, `{"status":429}`);
    expect(page.storage.state()?.q).toEqual([]);
    expect(page.storage.state()?.f).toBe(0);
    // Nothing waits on it: the next event goes after the usual flush delay, and the dropped one is never re-sent.
    page.relay("track", "placed-order");
    await wait(FLUSH_MS);
    expect(page.activities().map((a) => a.activity_id)).toEqual(["act:cm:logged-in", "act:cm:placed-order"]);
    await settle();
    expect(page.sent).toHaveLength(2);
  });

  it("a batch answered with refused activities drops and counts exactly those, and says why under debug", async () => {
    const page = identifiedPage({ debug: true });
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    // What the relay answers when it forwards some of a batch and refuses others (each named by index, field and rule).
    const text = JSON.stringify({
      activities: [{ status: "ingested" }],
      forwarded: 1,
      refused: [
        { index: 1, path: "a.1.attributes.int::v", message: "expected a number such as 24.99" },
        { index: 2, path: "a.2.activity_id", message: "expected at most 50 events per activity per contact in 24 hours (Ortto's limit)" },
      ],
    });
    page.answers.push({ status: 207, text });
    page.relay("track", "logged-in", { n: 1 });
    page.relay("track", "placed-order", { n: 2 });
    page.relay("track", "logged-in", { n: 3 });
    await settle();
    // One request, never split or re-sent: the relay took what it could.
    expect(page.sent.map((s) => s.body.activities.map((a) => a.attributes?.n))).toEqual([[1, 2, 3]]);
    expect(page.storage.state()?.q).toEqual([]);
    expect(page.storage.state()?.d).toBe(2);
    expect(warn).toHaveBeenCalledWith("relay:", 207, text);
  });

  it("counts nothing given up for a 2xx that refuses nothing, whatever its activities' text holds", async () => {
    const page = identifiedPage();
    // A quote in a value is escaped in JSON: `"index":` is only ever a key.
    page.answers.push({ status: 200, text: JSON.stringify({ activities: [{ status: "ingested", note: '"index": 1' }] }) });
    page.relay("track", "logged-in");
    await settle();
    expect(page.sent).toHaveLength(1);
    expect(page.storage.state()?.d).toBeUndefined();
  });

  it("says under debug why the relay took a batch without forwarding it (a crawler's verdict), and only under debug", async () => {
    const verdict = `{"activities":[],"outcome":"bot","reason":"a browser whose user agent names a bot (HeadlessChrome)"}`;
    for (const debug of [true, false]) {
      const page = identifiedPage({ debug });
      const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
      page.answers.push({ status: 202, text: verdict });
      page.relay("track", "logged-in");
      await settle();
      expect(page.sent).toHaveLength(1);
      if (debug) expect(warn).toHaveBeenCalledWith("relay:", 202, verdict);
      else expect(warn).not.toHaveBeenCalled();
      warn.mockRestore();
    }
  });

  it("gives up a request unanswered for 15 s (a hung relay) and sends its batch again, same key", async () => {
    const page = identifiedPage();
    page.answers.push("silent");
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
    await wait(15_000);
    await wait(backoff(1, 1));
    expect(page.sent).toHaveLength(2);
    expect(page.sent[1]?.body.activities[0]?.key).toBe(page.sent[0]?.body.activities[0]?.key);
    expect(page.storage.state()?.q).toEqual([]);
  });

  it("treats a fetch that throws synchronously as a failure to retry", async () => {
    const page = identifiedPage();
    page.fetch.mockImplementationOnce(() => {
      throw new TypeError("keepalive quota exceeded");
    });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    await wait(backoff(1, 1));
    expect(page.sent).toHaveLength(1);
    expect(page.storage.state()?.q).toEqual([]);
  });

  it.each([401, 403, 404, 415, 422])("drops a batch refused with %s, never retrying it", async (status) => {
    const page = identifiedPage({ debug: true });
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    page.answers.push(status);
    page.relay("track", "logged-in");
    page.relay("track", "placed-order");
    await settle();
    expect(page.sent).toHaveLength(1);
    expect(page.storage.state()?.q).toEqual([]);
    expect(warn).toHaveBeenCalledWith("relay:", status, `{"status":${status}}`);
  });

  it.each([400, 413])(
    "drops and counts a whole batch refused with %s, in one request (the relay refuses every activity of it)",
    async (status) => {
      const page = identifiedPage();
      page.answers.push(status);
      page.relay("track", "logged-in", { n: 1 });
      page.relay("track", "logged-in", { n: 2 });
      page.relay("track", "logged-in", { n: 3 });
      await settle();
      expect(page.sent.map((s) => s.body.activities.map((a) => a.attributes?.n))).toEqual([[1, 2, 3]]);
      expect(page.storage.state()?.q).toEqual([]);
      expect(page.storage.state()?.d).toBe(3);
    },
  );

  it("retries what an earlier page left, as soon as the next page loads", async () => {
    const storage = new MemoryStorage();
    const first = identifiedPage({ storage });
    first.answers.push("network");
    first.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(first.storage.state()?.q).toHaveLength(1);
    // The visitor navigates, offline, before the backoff runs out; the next page retries at once.
    Object.defineProperty(first.w.navigator, "onLine", { value: false, configurable: true });
    first.hide();
    expect(first.beacons).toHaveLength(0);
    const second = openPage({ storage });
    await wait(0);
    expect(second.sent).toHaveLength(1);
    expect(second.sent[0]?.body.activities[0]?.key).toBe(first.sent[0]?.body.activities[0]?.key);
    expect(storage.state()?.q).toEqual([]);
  });

  it("retries at once when the browser comes back online", async () => {
    const page = identifiedPage();
    page.answers.push("network");
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
    page.w.dispatchEvent(new page.w.Event("online"));
    await wait(0);
    expect(page.sent).toHaveLength(2);
    expect(page.storage.state()?.q).toEqual([]);
  });

  it("never sends a batch another live tab has in flight, however long its request takes", async () => {
    const storage = new MemoryStorage();
    const tabA = identifiedPage({ storage });
    tabA.answers.push("hang");
    tabA.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(tabA.sent).toHaveLength(1);
    const tabB = openPage({ storage });
    tabB.relay("track", "placed-order");
    await wait(FLUSH_MS);
    // Well past the lease: tab A is alive and its request has not been answered.
    await wait(LEASE_MS * 3);
    tabB.relay("track", "placed-order");
    await wait(FLUSH_MS);
    expect(tabB.activities().map((a) => a.activity_id)).toEqual(["act:cm:placed-order", "act:cm:placed-order"]);
    expect(tabA.sent).toHaveLength(1);
  });

  it("sends what a page left in flight once its lease is over, with the same key and created", async () => {
    const storage = new MemoryStorage();
    const first = identifiedPage({ storage });
    first.answers.push("hang");
    first.relay("track", "logged-in");
    await wait(FLUSH_MS);
    first.leave();
    const next = openPage({ storage });
    await wait(LEASE_MS - FLUSH_MS - 1);
    expect(next.sent).toHaveLength(0);
    await wait(LEASE_MS);
    expect(next.activities().map((a) => [a.key, a.created])).toEqual(first.activities().map((a) => [a.key, a.created]));
    await wait(0);
    expect(storage.state()).toMatchObject({ q: [] });
  });

  it("does not lose another tab's events when both write the queue", async () => {
    const storage = new MemoryStorage();
    const tabA = openPage({ storage });
    const tabB = openPage({ storage });
    tabA.relay("track", "logged-in");
    tabB.relay("track", "placed-order");
    tabA.relay("track", "viewed-page");
    await wait(0);
    expect(
      storage
        .state()
        ?.q.map((i) => i.a.activity_id)
        .sort(),
    ).toEqual(["logged-in", "placed-order", "viewed-page"]);
    // Each tab has a key of its own, which only it writes.
    expect(storage.tabs()).toHaveLength(2);
  });

  it("lets a live page adopt the events of a tab that died without pagehide, once its heartbeat has stood still for STALE_MS", async () => {
    const storage = new MemoryStorage();
    // What a tab that crashed a moment ago left: its heartbeat and its event.
    const item = { a: { activity_id: "logged-in", key: "k1", created: Date.now() }, k: "relay:crashed|1000000001" };
    storage.data.set("relay:crashed", JSON.stringify({ h: Date.now() }));
    storage.data.set("relay:crashed|1000000001", JSON.stringify(item));
    const fresh = openPage({ storage });
    fresh.relay("identify", { email: "chris@example.com" });
    await wait(FLUSH_MS);
    // It might be a live tab that is only idle: left alone while its heartbeat may still change.
    await wait(STALE_MS - HEARTBEAT_MS);
    expect(fresh.sent).toHaveLength(0);
    // No page load needed: the live page's own heartbeat timer looks again.
    await wait(HEARTBEAT_MS);
    expect(fresh.activities().map((a) => [a.key, a.activity_id])).toEqual([["k1", "act:cm:logged-in"]]);
    expect(storage.data.has("relay:crashed")).toBe(false);
  });
});

describe("storage", () => {
  it(`keeps at most ${MAX_QUEUE} events, dropping the oldest and counting them`, async () => {
    const page = openPage({ debug: true });
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    for (let n = 0; n < MAX_QUEUE + 5; n++) page.relay("track", "logged-in", { "int::v": n });
    // Tallied with the heartbeat.
    await wait(HEARTBEAT_MS);
    const state = page.storage.state();
    expect(state?.q).toHaveLength(MAX_QUEUE);
    expect(state?.d).toBe(5);
    expect(state?.q[0]?.a.attributes?.["int::v"]).toBe(5);
    expect(warn).toHaveBeenLastCalledWith("relay:", "D", 5);
  });

  it("does not write the shared state at each call while every call at the queue's bound drops one (other tabs re-read each write)", async () => {
    const page = openPage();
    for (let n = 0; n < MAX_QUEUE; n++) page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    const setItem = vi.spyOn(page.storage, "setItem");
    // A page tracking at 100 calls a second, each call in a task of its own.
    for (let n = 0; n < 20; n++) {
      page.relay("track", "logged-in");
      await wait(10);
    }
    expect(setItem.mock.calls.filter(([k]) => k === STORAGE_KEY).length).toBeLessThanOrEqual(1);
    // Tallied with the heartbeat, and when the page is hidden.
    await wait(HEARTBEAT_MS);
    expect(page.storage.state()?.d).toBe(20);
    page.relay("track", "logged-in");
    page.hide("visibilitychange");
    expect(page.storage.state()?.d).toBe(21);
  });

  it("adopts every event of several gone pages' queues, over the per-tab cap together: 120 of 120 sent", async () => {
    const storage = new MemoryStorage();
    // Three tabs open together, each holding 40 anonymous events, then closed.
    const tabs = [0, 1, 2].map(() => openPage({ storage }));
    for (const [t, tab] of tabs.entries()) for (let n = 0; n < 40; n++) tab.relay("track", "logged-in", { "int::v": t * 100 + n });
    await wait(0);
    for (const tab of tabs) tab.leave();
    const next = openPage({ storage });
    next.relay("identify", { email: "chris@example.com" });
    await settle();
    expect(new Set(next.activities().map((a) => a.key)).size).toBe(3 * 40);
    expect(storage.state()?.d).toBeUndefined();
  });

  it("stores each event at its call under a key of its own (one small write, whatever the queue holds), before any request", async () => {
    const page = identifiedPage();
    const writes = page.storage.writes;
    for (let n = 0; n < 50; n++) page.relay("track", "logged-in");
    // Stored at once: a crash after the call loses nothing (and the tab's heartbeat, before its first event).
    expect(page.storage.writes).toBe(writes + 51);
    expect(page.storage.state()?.q).toHaveLength(50);
    // The 51st call on a queue of 50 writes its own event, not the queue (and the tab's heartbeat once per task).
    await Promise.resolve();
    const before = { writes: page.storage.writes, data: new Map(page.storage.data) };
    page.relay("track", "logged-in", { note: "x".repeat(100) });
    await Promise.resolve();
    expect(page.storage.writes - before.writes).toBeLessThanOrEqual(2);
    const changed = [...page.storage.data].filter(([k, v]) => before.data.get(k) !== v);
    expect(changed.reduce((n, [, v]) => n + v.length, 0)).toBeLessThan(1000);
    expect(page.fetch).not.toHaveBeenCalled();
  });

  it("still delivers from memory when storage is full or disabled", async () => {
    for (const storage of [Object.assign(new MemoryStorage(), { quota: 10 }), Object.assign(new MemoryStorage(), { broken: true })]) {
      const page = identifiedPage({ storage });
      page.relay("track", "logged-in");
      page.relay("track", "placed-order");
      await wait(FLUSH_MS);
      expect(page.activities().map((a) => a.activity_id)).toEqual(["act:cm:logged-in", "act:cm:placed-order"]);
      expect(page.activities()[0]?.fields).toEqual({ "str::email": "chris@example.com" });
    }
  });

  it("keeps across a back/forward cache restore the queue it could not store (a full quota), and sends it", async () => {
    const storage = Object.assign(new MemoryStorage(), { quota: 10 });
    const page = openPage({ storage });
    page.relay("track", "logged-in");
    page.relay("track", "placed-order");
    page.hide();
    // Back from the back/forward cache: the key it never wrote is missing, and was never adopted.
    page.w.dispatchEvent(Object.assign(new page.w.Event("pageshow"), { persisted: true }));
    storage.quota = Number.POSITIVE_INFINITY;
    page.relay("identify", { email: "chris@example.com" });
    await wait(FLUSH_MS);
    expect(page.activities().map((a) => a.activity_id)).toEqual(["act:cm:logged-in", "act:cm:placed-order"]);
  });

  it("forgets across a back/forward cache restore the queue another page adopted meanwhile (no second send)", async () => {
    const storage = new MemoryStorage();
    const page = openPage({ storage });
    page.relay("track", "logged-in");
    page.hide();
    await wait(0);
    const next = openPage({ storage });
    await wait(0);
    expect(storage.tabs().map((t) => t.q.length)).toEqual([1]);
    next.relay("identify", { email: "chris@example.com" });
    await wait(FLUSH_MS);
    expect(next.activities().map((a) => a.activity_id)).toEqual(["act:cm:logged-in"]);
    page.w.dispatchEvent(Object.assign(new page.w.Event("pageshow"), { persisted: true }));
    await settle();
    expect(page.fetch).not.toHaveBeenCalled();
  });

  it("starts afresh from a corrupted stored queue", async () => {
    const storage = new MemoryStorage();
    storage.data.set("relay", "{not json");
    const page = identifiedPage({ storage });
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
  });
});

describe("page hide", () => {
  it.each(["pagehide", "visibilitychange"] as const)("sends waiting events at once with a keepalive fetch on %s", async (how) => {
    const page = identifiedPage();
    page.relay("track", "logged-in");
    page.hide(how);
    expect(page.sent).toHaveLength(1);
    expect(page.sent[0]?.url).toBe(URL_CREATE);
    expect(page.sent[0]?.init.keepalive).toBe(true);
    expect(page.sent[0]?.body.activities[0]?.activity_id).toBe("act:cm:logged-in");
    expect(page.beacon).not.toHaveBeenCalled();
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
    if (how === "pagehide") {
      // The page is gone: its answer is for nobody. The events stay stored, leased, for the next page.
      expect(page.storage.state()?.q.map((i) => i.l)).toEqual([expect.any(Number)]);
      expect(page.storage.tabs()[0]?.h).toBe(0);
    } else expect(page.storage.state()?.q).toEqual([]);
  });

  it("keeps the events for the next page when offline", async () => {
    const offline = identifiedPage({ onLine: false });
    offline.relay("track", "logged-in");
    offline.hide();
    expect(offline.sent).toHaveLength(0);
    expect(offline.storage.state()?.q).toHaveLength(1);
  });

  it("sends at page hide after a transient failure, leaving within the backoff", async () => {
    const page = identifiedPage();
    page.answers.push(503);
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
    page.relay("track", "placed-order");
    page.hide();
    expect(page.sent).toHaveLength(2);
    expect(page.sent[1]?.body.activities.map((a) => a.activity_id)).toEqual(["act:cm:logged-in", "act:cm:placed-order"]);
  });

  it("sends at page hide every event, 16 of 16, with a batch in flight and 15 tracked just before leaving", async () => {
    const page = identifiedPage();
    page.answers.push("hang");
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    expect(page.sent).toHaveLength(1);
    for (let n = 0; n < 15; n++) page.relay("track", "placed-order", { "int:cm:item-count": n });
    page.hide();
    const keys = page.activities().map((a) => a.key);
    expect(keys).toHaveLength(16);
    expect(new Set(keys).size).toBe(16);
  });

  it.each(["pagehide", "visibilitychange"] as const)(
    "sends at the end of the task the exit event a site tracks in its own %s handler (after the snippet's)",
    async (how) => {
      const page = identifiedPage();
      const target = how === "pagehide" ? page.w : page.w.document;
      target.addEventListener(how, () => page.relay("track", "logged-in", { "int::v": 1 }));
      page.hide(how);
      // Microtasks only: no timer runs for a page that is going.
      await Promise.resolve();
      expect(page.activities().map((a) => a.attributes?.["int::v"])).toEqual([1]);
    },
  );

  it("sends again in halves a batch the browser refuses at page hide (keepalive's 64 KiB shared with the site's own beacon)", async () => {
    const page = identifiedPage();
    page.fetch.mockImplementationOnce(() => Promise.reject(new TypeError("Failed to fetch")));
    for (let n = 0; n < 10; n++) page.relay("track", "placed-order", { "int:cm:item-count": n });
    page.hide();
    await wait(0);
    expect(page.sent.map((s) => s.body.activities.length)).toEqual([5, 5]);
    expect(new Set(page.activities().map((a) => a.key)).size).toBe(10);
  });

  it("sends at the end of the task an event tracked after pagehide (the page is gone: no timer will run)", async () => {
    const page = identifiedPage();
    page.hide();
    page.relay("track", "logged-in");
    await Promise.resolve();
    expect(page.sent).toHaveLength(1);
  });

  it("does not send a batch already in flight again", async () => {
    const page = identifiedPage();
    page.answers.push("hang");
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    page.hide();
    expect(page.sent).toHaveLength(1);
  });

  it("never listens to unload (it would break the back/forward cache)", () => {
    const spies: { mock: { calls: unknown[][] } }[] = [];
    openPage({
      pageviews: "act:cm:viewed-page",
      beforeStart: (w) => {
        spies.push(vi.spyOn(w, "addEventListener"), vi.spyOn(w.document, "addEventListener"));
      },
    });
    const events = spies.flatMap((spy) => spy.mock.calls.map((call) => String(call[0])));
    expect(events).toEqual(expect.arrayContaining(["pagehide", "visibilitychange", "pageshow"]));
    expect(events).not.toContain("unload");
    expect(events).not.toContain("beforeunload");
  });

  it("gives up on an event too large for any request: counted, explained under data-debug, the others sent", async () => {
    const page = identifiedPage({ debug: true });
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    page.relay("track", "logged-in", { "int::v": 1 });
    page.relay("track", "placed-order", { "txt:cm:gift-message": "x".repeat(MAX_BATCH_BYTES / 3) });
    page.relay("track", "logged-in", { "int::v": 2 });
    await settle();
    expect(page.activities().map((a) => a.activity_id)).toEqual(["act:cm:logged-in", "act:cm:logged-in"]);
    expect(page.storage.state()).toMatchObject({ q: [], d: 1 });
    expect(warn).toHaveBeenCalledWith("relay:", "B", expect.objectContaining({ activity_id: "placed-order" }));
    expect(warn).toHaveBeenCalledWith("relay:", "D", 1);
  });

  it("sends at page hide as many requests as keepalive's 64 KiB holds, leaving the rest for the next page", () => {
    const page = identifiedPage();
    for (let n = 0; n < 8; n++) page.relay("track", "placed-order", { "txt:cm:gift-message": "x".repeat(15000) });
    page.hide();
    expect(page.sent.length).toBeGreaterThan(1);
    expect(page.sent.reduce((n, s) => n + new Blob([s.raw]).size, 0)).toBeLessThanOrEqual(64 * 1024);
    expect(page.storage.state()?.q).toHaveLength(8);
    expect(page.storage.state()?.q.filter((i) => i.l)).toHaveLength(page.sent.length);
  });
});

describe("a device whose clock is wrong", () => {
  it("sends the device's time with every request, so the relay dates even a page's first events in its own time", async () => {
    const page = identifiedPage();
    // The relay's clock is 2 h behind this device's.
    page.relayAhead = -2 * 3_600_000;
    page.relay("track", "logged-in");
    await wait(FLUSH_MS);
    // One request, at once right: no refusal for a created in the future, nothing to correct, nothing stored about the clock.
    expect(page.sent).toHaveLength(1);
    expect(JSON.parse(page.sent[0]?.raw as string).t).toBe(Date.now());
    expect(page.activities()[0]?.created).toBe("2026-11-27T04:00:00.000Z");
    expect(Object.keys(page.storage.state() ?? {}).filter((k) => k === "o" || k === "u")).toEqual([]);
    // The next page too.
    const next = openPage({ storage: page.storage });
    next.relayAhead = page.relayAhead;
    next.relay("track", "placed-order");
    await wait(FLUSH_MS);
    expect(next.activities().map((a) => a.created)).toEqual(["2026-11-27T04:00:01.000Z"]);
  });

  it("dates an event right when the device's clock steps between its call and its request (both in the page's monotonic time)", async () => {
    const page = identifiedPage();
    page.relay("track", "logged-in");
    // The device's clock steps 1 h ahead; the relay's does not.
    vi.setSystemTime(Date.now() + 3_600_000);
    page.relayAhead = -3_600_000;
    await wait(FLUSH_MS);
    expect(JSON.parse(page.sent[0]?.raw as string).t).toBe(Date.parse("2026-11-27T06:00:01.000Z"));
    expect(page.activities()[0]?.created).toBe("2026-11-27T06:00:00.000Z");
  });
});
