import { env, exports } from "cloudflare:workers";
import type { DeliveryMessage } from "../../worker/delivery/messages.ts";
import worker, { relay } from "../../worker/index.ts";
import type { Isolate } from "../../worker/isolate.ts";

export const RELAY = "https://relay.test";
export const ORIGIN = "https://shop.example";
/** Every outbound fetch of the test worker goes to the emulator (vitest.config.ts `outboundService`). */
export const EMULATOR = "http://ortto.test";

import { loggedIn } from "../fixtures/seed.ts";

export { loggedIn };

export interface PostOptions {
  origin?: string | null;
  contentType?: string | null;
  headers?: Record<string, string>;
  ip?: string;
}

/** A visitor's IP from the benchmarking range, new for each request unless a test sets one (the per-IP budget is 100 a minute). */
export const randomIp = () => `198.18.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 256)}`;

/**
 * Miniflare's rate limiter (IP_RATE_LIMITER, 100 a minute) counts in windows aligned to the clock's
 * minutes. A test that sends more than the limit from one network and counts the 429s first waits,
 * if the current window ends within `marginMs`, for the next one, so that its burst meets one window.
 */
export async function withinOneRateWindow(marginMs = 10_000) {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < marginMs) await new Promise((resolve) => setTimeout(resolve, left + 100));
}

export function postInit(
  body: unknown,
  { origin = ORIGIN, contentType = "text/plain", headers = {}, ip = randomIp() }: PostOptions = {},
): RequestInit {
  const h: Record<string, string> = { "CF-Connecting-IP": ip, ...headers };
  if (origin) h.Origin = origin;
  if (contentType) h["Content-Type"] = contentType;
  return { method: "POST", headers: h, body: typeof body === "string" ? body : JSON.stringify(body) };
}

/** A POST through the deployed-shape worker (the test worker's own default export). */
export function post(body: unknown, options?: PostOptions) {
  return exports.default.fetch(`${RELAY}/v1/activities/create`, postInit(body, options));
}

const workers = new WeakMap<Isolate, typeof worker>();

/**
 * A POST through the app with some bindings changed (GEO_MODE, timeouts, a missing key); with
 * `isolate`, through an app over that isolate's memory (a test's stand-in for a new isolate).
 */
export function postWith(
  bindings: Partial<Cloudflare.Env> & Record<string, unknown>,
  body: unknown,
  options?: PostOptions & { cf?: Record<string, unknown>; isolate?: Isolate },
) {
  const request = new Request(`${RELAY}/v1/activities/create`, { ...postInit(body, options), cf: options?.cf } as RequestInit);
  let handler = worker;
  if (options?.isolate) {
    handler = workers.get(options.isolate) ?? relay(options.isolate);
    workers.set(options.isolate, handler);
  }
  return handler.fetch(request, { ...env, ...bindings });
}

export interface StoredActivity {
  activity_id: string;
  person_id?: string;
  fields?: Record<string, unknown>;
  attributes?: Record<string, unknown>;
  location?: Record<string, unknown>;
  key?: string;
  created?: string;
}
export interface EmulatorRequest {
  received_at: string;
  headers: Record<string, string>;
  body: { activities?: StoredActivity[]; async?: boolean } & Record<string, unknown>;
  status: number;
}

export const emulator = {
  reset: () => fetch(`${EMULATOR}/_emulator/reset`, { method: "POST" }),
  faults: (faults: Record<string, unknown>) =>
    fetch(`${EMULATOR}/_emulator/faults`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(faults),
    }),
  activities: async () =>
    (await (await fetch(`${EMULATOR}/_emulator/activities`)).json()) as {
      activities: StoredActivity[];
      requests: number;
      duplicates: number;
    },
  requests: async () => (await (await fetch(`${EMULATOR}/_emulator/requests`)).json()) as EmulatorRequest[],
};

/** A signed-in visitor's activity keyed `${tag}-${i}`, with an email of its own. */
export const taggedEvent = (tag: string, i: number) =>
  loggedIn({ key: `${tag}-${i}`, created: new Date().toISOString(), fields: { "str::email": `${tag}${i}@example.com` } });

/** A status Ortto counts towards its ban (15 bad requests in 15 s): a 4xx but 429. */
export const isClientError = (s: number) => s >= 400 && s < 500 && s !== 429;

/** The most requests answered with a status `counted` within any 15 s window (Ortto's ban window). */
export function mostInWindow(log: { received_at: string; status: number }[], counted = isClientError, windowMs = 15_000): number {
  const times = log
    .filter((r) => counted(r.status))
    .map((r) => Date.parse(r.received_at))
    .sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; j < times.length; j++) {
    while ((times[j] as number) - (times[i] as number) >= windowMs) i++;
    most = Math.max(most, j - i + 1);
  }
  return most;
}

/** The server token the health helpers use (set on the env of each call, as a deploy sets the secret). */
export const HEALTH_TOKEN = "health-token-for-tests";

/** `/healthz` with the server token: the details an operator reads (this isolate's memory, no Durable Object). */
export async function healthDetails<T = Record<string, unknown>>(): Promise<T> {
  const res = await worker.fetch(new Request(`${RELAY}/healthz`, { headers: { Authorization: `Bearer ${HEALTH_TOKEN}` } }), {
    ...env,
    SERVER_TOKEN: HEALTH_TOKEN,
  });
  return (await res.json()) as T;
}

/** The account pacer's own view (the Durable Object every sender shares), read directly as an operator's tool would. */
export function pacerStats() {
  const ns = env.UPSTREAM_PACER;
  return ns.get(ns.idFromName("account")).stats();
}

/** What landed in the dead-letter queue (test/fixtures/test-network.js consumes it in tests). */
export const deadLetters = async () => (await (await fetch("http://dead-letters.test/")).json()) as DeliveryMessage[];
/** Empties the dead-letter list (before each test that reads it). */
export const clearDeadLetters = () => fetch("http://dead-letters.test/", { method: "DELETE" });

/**
 * Reads until `check` holds or `timeoutMs` passes, and returns the last value read (the test asserts
 * on it): queue deliveries happen in the background, after retry delays.
 */
export async function eventually<T>(read: () => Promise<T>, check: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (check(value) || Date.now() > until) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Waits, when fewer than `leftSeconds` remain of the current fixed window of a rate limit of
 * `periodSeconds` (windows start at multiples of the period, at the edge and in Miniflare), for the
 * next one: a test counting requests against the limit then cannot straddle two windows.
 */
export async function windowWithTimeLeft(periodSeconds: number, leftSeconds: number) {
  const period = periodSeconds * 1000;
  const left = period - (Date.now() % period);
  if (left < leftSeconds * 1000) await new Promise((r) => setTimeout(r, left + 50));
}

/** A delivery-queue message as the relay enqueues it, for a batch handed to the worker's queue handler. */
export function message(
  id: string,
  activities: unknown[],
  attempts = 1,
): { id: string; timestamp: Date; attempts: number; body: DeliveryMessage } {
  return { id, timestamp: new Date(), attempts, body: { v: 1, request_id: id, activities } as DeliveryMessage };
}
