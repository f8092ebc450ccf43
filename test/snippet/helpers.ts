/**
 * A page for the snippet to run in: a fresh happy-dom window (so listeners and history
 * wrappers never leak between tests) with fetch and sendBeacon recorded, and a localStorage
 * that several "pages" (windows) can share, like tabs or successive loads of one origin.
 */
import { Window } from "happy-dom";
import { vi } from "vitest";
import type { ActivitiesRequest } from "../../shared/activities.ts";
import { createRelay, type Item, STORAGE_KEY, type State, type TabQueue } from "../../snippet/src/core.ts";
import type { Relay, RelayOptions } from "../../snippet/src/relay.d.ts";
import { expandShorthands } from "../../worker/intake/shorthand.ts";

export const ENDPOINT = "https://relay.example";
export const URL_CREATE = `${ENDPOINT}/v1/activities/create`;

/**
 * A localStorage of a Map, shared by the pages ("tabs") given it; `quota` makes setItem throw like
 * a full one, `broken` makes every call throw. Each page sees it through `view(w)`, which lists
 * the keys (Object.keys) and fires `storage` events in the other pages a task after a change, as
 * browsers do.
 */
export class MemoryStorage {
  data = new Map<string, string>();
  quota = Number.POSITIVE_INFINITY;
  broken = false;
  writes = 0;
  windows = new Set<Window>();
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
  /** The storage as the page of window `w` sees it. */
  view(w: Window) {
    this.windows.add(w);
    const notify = (key: string, oldValue: string | null, newValue: string | null) => {
      if (oldValue === newValue) return;
      for (const other of this.windows) {
        if (other !== w)
          setTimeout(() => other.dispatchEvent(Object.assign(new other.Event("storage"), { key, oldValue, newValue, storageArea: null })));
      }
    };
    const target = {
      getItem: (key: string) => this.getItem(key),
      setItem: (key: string, value: string) => {
        const old = this.data.get(key) ?? null;
        this.setItem(key, value);
        notify(key, old, value);
      },
      removeItem: (key: string) => {
        const old = this.data.get(key) ?? null;
        this.removeItem(key);
        notify(key, old, null);
      },
    };
    return new Proxy(target, {
      ownKeys: () => {
        if (this.broken) throw new Error("SecurityError");
        return [...this.data.keys()];
      },
      getOwnPropertyDescriptor: (_, key) =>
        typeof key === "string" && this.data.has(key) ? { enumerable: true, configurable: true, value: this.data.get(key) } : undefined,
    });
  }
  /** A tab's stored heartbeat (`relay:<tab>`), parsed, with `q` the events stored under its keys (`relay:<tab>|<n>`). */
  tabs(): (TabQueue & { q: Item[]; f: number })[] {
    return [...this.data]
      .filter(([k]) => k.startsWith(`${STORAGE_KEY}:`) && !k.includes("|"))
      .map(([k, v]) => ({ f: 0, q: [], ...JSON.parse(v), ...(JSON.parse(v).q ? {} : { q: this.events(k) }) }));
  }
  /** The events stored under keys starting with `prefix` (every event: `relay:`), oldest first. */
  events(prefix = `${STORAGE_KEY}:`): Item[] {
    return [...this.data]
      .filter(([k]) => k.startsWith(prefix) && k.includes("|"))
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([, v]) => JSON.parse(v));
  }
  /**
   * The snippet's stored state, parsed: the shared state, with `q` every stored event (an older
   * build's tab queues included) and `f` 0, or undefined when nothing is stored.
   */
  state(): (State & { q: Item[]; f: number }) | undefined {
    const raw = this.data.get(STORAGE_KEY);
    const events = this.events();
    const old = [...this.data]
      .filter(([k, v]) => k.startsWith(`${STORAGE_KEY}:`) && !k.includes("|") && JSON.parse(v).q)
      .flatMap(([, v]) => JSON.parse(v).q as Item[]);
    if (raw === undefined && !events.length && !old.length && !this.tabs().length) return undefined;
    const shared: State = raw === undefined ? {} : JSON.parse(raw);
    return { ...shared, q: [...((shared as { q?: Item[] }).q ?? []), ...old, ...events], f: 0 };
  }
}

export interface Sent {
  url: string;
  /** The body as the relay reads it: parsed, with the snippet's shorthands expanded (worker/intake/shorthand.ts). */
  body: ActivitiesRequest;
  raw: string;
  init: RequestInit;
}

/**
 * What the fake relay answers: a status, a status with a `Retry-After` header (seconds, as the
 * relay sends it), a thrown error (network failure), a promise never settled ("hang"), or no answer
 * ("silent": the request fails when its `signal` aborts, as a browser's does).
 */
export type Answer = number | { status: number; retryAfter?: string; text?: string } | "network" | "hang" | "silent";

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
  /** How far the relay's clock is ahead of the page's, in ms (it corrects `created` by the request's `t`, and is its `Date` header). */
  relayAhead: number;
  /** The activities of every fetch, flattened. */
  activities(): ActivitiesRequest["activities"];
  hide(how?: "pagehide" | "visibilitychange"): void;
  /** The visitor navigates away: pagehide, and the page hears no more storage events. */
  leave(): void;
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
  Object.defineProperty(w, "localStorage", { value: storage.view(w as unknown as Window), configurable: true });
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
    relayAhead: 0,
    activities() {
      return page.sent.flatMap((s) => s.body.activities);
    },
    leave() {
      page.hide();
      storage.windows.delete(w as unknown as Window);
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
    page.sent.push({
      url: target,
      raw,
      body: expandShorthands(JSON.parse(raw), undefined, Date.now() + page.relayAhead) as ActivitiesRequest,
      init,
    });
    const answer = page.answers.shift() ?? 200;
    if (answer === "hang") return new Promise(() => {});
    if (answer === "silent") return new Promise((_, reject) => init.signal?.addEventListener("abort", () => reject(init.signal?.reason)));
    if (answer === "network") return Promise.reject(new TypeError("Failed to fetch"));
    const { status, retryAfter, text = `{"status":${status}}` } = typeof answer === "number" ? { status: answer } : answer;
    // The relay exposes Retry-After and Date to CORS (Access-Control-Expose-Headers), so a page can read them.
    const headers = new Headers({ Date: new Date(Date.now() + page.relayAhead).toUTCString() });
    if (retryAfter !== undefined) headers.set("Retry-After", retryAfter);
    return Promise.resolve({ status, headers, text: () => Promise.resolve(text) });
  });
  page.beacon = vi.fn((target: string, data: string) => {
    page.beacons.push({ url: target, raw: data, body: JSON.parse(data), init: {} });
    return page.beaconAccepts;
  });
  Object.defineProperty(w, "fetch", { value: page.fetch, configurable: true });
  // happy-dom's AbortSignal.timeout runs on the real clock: this one runs on the test's (fake) timers.
  Object.defineProperty(w.AbortSignal, "timeout", {
    value: (ms: number) => {
      const controller = new w.AbortController();
      setTimeout(() => controller.abort(new w.DOMException("signal timed out", "TimeoutError")), ms);
      return controller.signal;
    },
    configurable: true,
  });
  Object.defineProperty(w.navigator, "sendBeacon", { value: page.beacon, configurable: true });
  beforeStart?.(w);
  page.relay = createRelay({ endpoint: ENDPOINT, ...relayOptions, window: w as unknown as globalThis.Window });
  return page;
}

/**
 * Lets every timer due in the next ten minutes run (the snippet's heartbeat never stops, so
 * "run every timer" would never end), and every promise they settle.
 */
export async function settle() {
  await vi.advanceTimersByTimeAsync(10 * 60_000);
}

/** Lets timers up to `ms` run, and every promise they settle. */
export async function wait(ms = 0) {
  await vi.advanceTimersByTimeAsync(ms);
}
