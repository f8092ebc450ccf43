/**
 * A page for the snippet to run in: a fresh happy-dom window (so listeners and history
 * wrappers never leak between tests) with fetch and sendBeacon recorded, and a localStorage
 * that several "pages" (windows) can share, like tabs or successive loads of one origin.
 */
import { Window } from "happy-dom";
import { vi } from "vitest";
import type { ActivitiesRequest } from "../../shared/activities.ts";
import { createRelay, STORAGE_KEY, type State } from "../../snippet/src/core.ts";
import type { Relay, RelayOptions } from "../../snippet/src/relay.d.ts";

export const ENDPOINT = "https://relay.example";
export const URL_CREATE = `${ENDPOINT}/v1/activities/create`;

/** A localStorage of a Map; `quota` makes setItem throw like a full one, `broken` makes every call throw. */
export class MemoryStorage {
  data = new Map<string, string>();
  quota = Number.POSITIVE_INFINITY;
  broken = false;
  writes = 0;
  getItem(key: string) {
    if (this.broken) throw new Error("SecurityError");
    return this.data.get(key) ?? null;
  }
  setItem(key: string, value: string) {
    if (this.broken) throw new Error("SecurityError");
    if (value.length > this.quota) throw new Error("QuotaExceededError");
    this.writes++;
    this.data.set(key, value);
  }
  removeItem(key: string) {
    if (this.broken) throw new Error("SecurityError");
    this.data.delete(key);
  }
  /** The snippet's stored state, parsed. */
  state(): State | undefined {
    const raw = this.data.get(STORAGE_KEY);
    return raw === undefined ? undefined : JSON.parse(raw);
  }
}

export interface Sent {
  url: string;
  body: ActivitiesRequest;
  raw: string;
  init: RequestInit;
}

/**
 * What the fake relay answers: a status, a status with a `Retry-After` header (seconds, as the
 * relay sends it), a thrown error (network failure), or a promise never settled.
 */
export type Answer = number | { status: number; retryAfter: string } | "network" | "hang";

export interface Page {
  w: Window;
  relay: Relay;
  storage: MemoryStorage;
  /** Every fetch, in order. */
  sent: Sent[];
  /** Every sendBeacon call, in order. */
  beacons: Sent[];
  fetch: ReturnType<typeof vi.fn>;
  beacon: ReturnType<typeof vi.fn>;
  /** The answers of the next fetches, first first; when empty, 200. */
  answers: Answer[];
  /** What sendBeacon returns. */
  beaconAccepts: boolean;
  /** The activities of every fetch, flattened. */
  activities(): ActivitiesRequest["activities"];
  hide(how?: "pagehide" | "visibilitychange"): void;
}

export interface PageOptions extends Partial<Omit<RelayOptions, "window">> {
  url?: string;
  referrer?: string;
  title?: string;
  storage?: MemoryStorage;
  globalPrivacyControl?: boolean;
  onLine?: boolean;
  /** Runs on the window before the snippet starts (to spy on it). */
  beforeStart?: (w: Window) => void;
}

/** Opens a page and starts the snippet in it (as the IIFE would, minus the script tag). */
export function openPage(options: PageOptions = {}): Page {
  const {
    url = "https://shop.example/",
    referrer,
    title,
    storage = new MemoryStorage(),
    globalPrivacyControl,
    onLine,
    beforeStart,
    ...relayOptions
  } = options;
  const w = new Window({ url });
  if (title !== undefined) w.document.title = title;
  if (referrer !== undefined) Object.defineProperty(w.document, "referrer", { value: referrer, configurable: true });
  Object.defineProperty(w, "localStorage", { value: storage, configurable: true });
  if (globalPrivacyControl !== undefined)
    Object.defineProperty(w.navigator, "globalPrivacyControl", { value: globalPrivacyControl, configurable: true });
  if (onLine !== undefined) Object.defineProperty(w.navigator, "onLine", { value: onLine, configurable: true });

  const page = {
    w,
    storage,
    sent: [] as Sent[],
    beacons: [] as Sent[],
    answers: [] as Answer[],
    beaconAccepts: true,
    activities() {
      return page.sent.flatMap((s) => s.body.activities);
    },
    hide(how: "pagehide" | "visibilitychange" = "pagehide") {
      if (how === "pagehide") w.dispatchEvent(new w.Event("pagehide"));
      else {
        Object.defineProperty(w.document, "hidden", { value: true, configurable: true });
        w.document.dispatchEvent(new w.Event("visibilitychange"));
      }
    },
  } as Page;
  page.fetch = vi.fn((target: string, init: RequestInit) => {
    const raw = init.body as string;
    page.sent.push({ url: target, raw, body: JSON.parse(raw), init });
    const answer = page.answers.shift() ?? 200;
    if (answer === "hang") return new Promise(() => {});
    if (answer === "network") return Promise.reject(new TypeError("Failed to fetch"));
    const { status, retryAfter } = typeof answer === "number" ? { status: answer, retryAfter: undefined } : answer;
    // The relay exposes Retry-After to CORS (Access-Control-Expose-Headers), so a page can read it.
    const headers = new Headers(retryAfter === undefined ? {} : { "Retry-After": retryAfter });
    return Promise.resolve({ status, headers, text: () => Promise.resolve(`{"status":${status}}`) });
  });
  page.beacon = vi.fn((target: string, data: string) => {
    page.beacons.push({ url: target, raw: data, body: JSON.parse(data), init: {} });
    return page.beaconAccepts;
  });
  Object.defineProperty(w, "fetch", { value: page.fetch, configurable: true });
  Object.defineProperty(w.navigator, "sendBeacon", { value: page.beacon, configurable: true });
  beforeStart?.(w);
  page.relay = createRelay({ endpoint: ENDPOINT, ...relayOptions, window: w as unknown as globalThis.Window });
  return page;
}

/** Lets timers up to `ms` run, and every promise they settle. */
export async function wait(ms = 0) {
  await vi.advanceTimersByTimeAsync(ms);
}
