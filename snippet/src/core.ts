/**
 * The relay client: queueing, identity, consent, batching, storage and retries.
 *
 * Design goals, in order: never throw into the page; never lose an event (every event is in
 * localStorage from the call until the relay has taken it); stay under 2 KB gzipped. So the
 * code favours short, repeated shapes that minify and compress well, and the stored format
 * uses short property names fixed by hand (never mangled: a new build must read an old queue).
 */
import type { ActivitiesRequest, ActivityInput } from "../../shared/activities.ts";
import type { Relay, RelayOptions } from "./relay.d.ts";

/** One event in the queue. */
export interface Item {
  /** The activity as it goes on the wire; `key` and `created` are fixed at the call, for Ortto's merging of re-sends. */
  a: ActivityInput;
  /** The identity token of the person in `a.fields` (a batch carries one token, so one person's token). */
  t?: string;
  /** Leased until this time (ms) by the tab that is sending it, so other tabs leave it alone. */
  l?: number;
  /** Send alone: it was in a batch the relay refused (a 400, or a 429 for the daily limit), so one bad event cannot sink the others. */
  o?: 1;
}

/** Everything the snippet keeps, under one localStorage key (so one read and one write per change). */
export interface State {
  /** The queue: events not yet taken by the relay, oldest first; those without an identifying field in `a.fields` are held for `identify`. */
  q: Item[];
  /** The identity: person fields and token. */
  i?: { f: Record<string, unknown>; t?: string };
  /** Events dropped because the queue was full (oldest first). */
  d: number;
  /** Failed sends in a row (network, 5xx, 429); drives the backoff and keeps the page-hide beacon off. */
  f: number;
  /** Consent: true granted, false refused, absent not asked. */
  c?: boolean;
  /** No request before this time (ms): the relay's Retry-After on a 429 or 5xx, honoured by every tab and page. */
  r?: number;
}

export const STORAGE_KEY = "relay";
/** Queue bound: the oldest events go first (counted in `d`). */
export const MAX_QUEUE = 100;
/** A batch is sent at this many events, or after FLUSH_MS. */
export const MAX_BATCH = 10;
export const FLUSH_MS = 1000;
/** keepalive and sendBeacon allow 64 KiB of body in flight per page; activities stay under this, leaving room for the envelope. */
export const MAX_BATCH_BYTES = 60000;
/** How long a sending tab owns its batch: after it, another tab (or the next page) may send it again. */
export const LEASE_MS = 30000;
/**
 * A 429 whose Retry-After (seconds) is longer than this is a refusal: Ortto's daily limit per
 * contact and activity, which waiting for would hold the queue for up to a day.
 */
export const MAX_RETRY_AFTER = 3600;

/**
 * The wait before the next attempt after `failures` failures in a row: a step that doubles
 * from 1 s up to 64 s, times a random 1–2 (1–2 s, 2–4 s, … 64–128 s), so that many pages
 * coming back at once do not retry in step.
 */
export const backoff = (failures: number, random = Math.random()) => 500 * 2 ** Math.min(failures, 7) * (1 + random);

// Aliases of what recurs, so it minifies to one letter.
const { stringify, parse } = JSON;
const empty = (): State => ({ q: [], d: 0, f: 0 });
/** An object that is not an array or null (from any realm: an iframe's objects have their own Object). */
const isObject = (x: unknown): x is Record<string, unknown> => !!x && typeof x === "object" && !Array.isArray(x);
/** A deep copy, so later changes by the page do not reach the queue; it throws on what JSON cannot carry. */
const copy = <T>(x: T): T => x && parse(stringify(x));
/** Ortto's limit on text. */
const clip = (s: string) => s.slice(0, 255);
const shorthand = /^(email|first|last|ei)$/;
/** Person fields that identify someone: the relay refuses an activity without one (Ortto records activities only for identified people). */
const identifying = ["str::email", "str::ei", "phn::phone"];
/** Whether person fields include an identifying one: only then may an event go (until then it is held). */
const known = (f?: Record<string, unknown>) => identifying.some((k) => f?.[k]);

export function createRelay(options: RelayOptions): Relay {
  // A relay that does nothing, if even starting fails (no window in SSR, a hostile page).
  let api: Relay = () => {};
  try {
    const { endpoint, consent: mode, gpc, debug, pageviews, window: w = window } = options;
    const { navigator: nav, document: doc } = w;
    const url = `${endpoint.replace(/\/+$/, "")}/v1/activities/create`;
    const now = Date.now;
    const warn = (...args: unknown[]) => {
      debug && console.warn("relay:", ...args);
    };
    // Every way into this code (the API, timers, listeners, fetch callbacks) goes through this.
    const safe =
      <A extends unknown[]>(f: (...args: A) => unknown) =>
      (...args: A) => {
        try {
          f(...args);
        } catch (e) {
          warn(e);
        }
      };

    let mem = empty();
    /** The pending flush, if any. */
    let timer: ReturnType<typeof setTimeout> | 0 | undefined;
    /** Until when this tab has a request in flight (one at a time, so keepalive's 64 KiB holds). */
    let busy = 0;

    const blocked = nav.globalPrivacyControl === true && gpc !== "ignore";
    /** May we send and store? Refused or not-yet-given consent keeps everything in memory. */
    const allowed = () => !blocked && (mem.c ?? mode !== "required");
    /** Whether storage holds what we hold. Storage that is disabled (a throwing getter), missing or full leaves the queue in memory for this page. */
    let stored = 1;
    const read = () => {
      try {
        // A missing key reads as null: an empty queue.
        if (stored) mem = { ...empty(), ...parse(w.localStorage.getItem(STORAGE_KEY) as string) };
      } catch {}
    };
    /** Stores a state, or removes ours. */
    const put = (state?: State) => {
      try {
        const { localStorage } = w;
        state ? localStorage.setItem(STORAGE_KEY, stringify(state)) : localStorage.removeItem(STORAGE_KEY);
      } catch {
        stored = 0;
      }
    };
    const write = () => allowed() && put(mem);
    /** A change: read what other tabs wrote, change it, write it back (all in one task, so tabs do not lose each other's events). */
    const change = (f: () => void) => {
      allowed() && read();
      f();
      write();
    };
    const later = (ms: number) => {
      clearTimeout(timer);
      timer = setTimeout(flush, ms);
    };
    /** After a new event: send at once at MAX_BATCH, else soon, but never before a pending backoff. */
    const kick = () => (!mem.f && mem.q[MAX_BATCH - 1] ? flush() : timer || later(mem.f ? backoff(mem.f) : FLUSH_MS));
    const body = (batch: Item[]) =>
      stringify({ activities: batch.map((i) => i.a), identity_token: batch[0]?.t } satisfies ActivitiesRequest);
    const within = (batch: Item[], i: Item) => batch.some((b) => b.a.key === i.a.key);
    const without = (batch: Item[]) => {
      mem.q = mem.q.filter((i) => !within(batch, i));
    };

    /**
     * The next batch from the queue: identified events that no tab is sending, of one identity
     * token, at most MAX_BATCH of them and MAX_BATCH_BYTES in all. (An event too large for any
     * request is never taken; the relay would refuse it anyway, and the queue bound drops it.)
     */
    const take = () => {
      const batch: Item[] = [];
      let bytes = 0;
      for (const i of mem.q) {
        const size = new Blob([stringify(i.a)]).size + 1;
        const first = batch[0];
        if (
          known(i.a.fields) &&
          !((i.l as number) > now()) &&
          !batch[MAX_BATCH - 1] &&
          bytes + size <= MAX_BATCH_BYTES &&
          (!first || (i.t === first.t && !i.o && !first.o))
        ) {
          batch.push(i);
          bytes += size;
        }
      }
      return batch;
    };

    const flush = safe(() => {
      clearTimeout(timer);
      timer = 0;
      if (!allowed() || busy > now()) return;
      let batch: Item[] = [];
      change(() => {
        // A pause the relay asked for (Retry-After, stored by whichever tab or page heard it) holds everything.
        batch = (mem.r as number) > now() ? [] : take();
        for (const i of batch) i.l = now() + LEASE_MS;
      });
      if (!batch.length) return (mem.r as number) > now() && later((mem.r as number) - now());
      busy = now() + LEASE_MS;
      // text/plain (a string body) makes this a CORS "simple request": no preflight. The promise
      // wrapper turns a synchronous throw into a failure like any other.
      new Promise<Response>((resolve) => resolve(w.fetch(url, { method: "POST", keepalive: true, body: body(batch) })))
        .then((r) => r.text().then((text) => done(batch, r.status, text, +(r.headers.get("retry-after") as string))))
        .catch(() => done(batch, 0));
    });

    /**
     * The relay answered `status` with `text`, and `after`, its Retry-After in seconds (status 0:
     * no answer; `after` NaN or undefined: no header, or not a number of seconds, so no pause).
     */
    const done = safe((batch: Item[], status: number, text?: string, after?: number) => {
      busy = 0;
      const sent = status > 199 && status < 300;
      // A 4xx would fail again: drop it. So would a 429 asking for more than an hour (Ortto's daily limit per contact).
      const refused = status > 399 && status < 500 && (status !== 429 || (after as number) > MAX_RETRY_AFTER);
      // But a refused batch of several is first split up: one bad (or over-limit) event must not sink the others.
      const split = refused && batch[1] && (status === 400 || status === 429);
      change(() => {
        if (sent || (refused && !split)) without(batch);
        else
          for (const i of mem.q) {
            if (within(batch, i)) {
              delete i.l;
              if (split) i.o = 1;
            }
          }
        if (sent) mem.f = 0;
        else if (!refused) {
          mem.f++;
          // No request before Retry-After is over (it stores as null when NaN: no pause); the backoff still applies.
          mem.r = now() + (after as number) * 1000;
        }
      });
      refused && warn("refused", status, text);
      sent || refused ? flush() : later(backoff(mem.f));
    });

    /** Page hidden (maybe for good): hand what is ready to sendBeacon, which outlives the page. */
    const hide = safe(() => {
      // Offline, or the relay failing: keep the events for the next page instead.
      if (!allowed() || !nav.onLine) return;
      change(() => {
        if (mem.f) return;
        for (let batch = take(); batch.length && nav.sendBeacon?.(url, body(batch)); batch = take()) without(batch);
      });
    });

    const track = (id: string, attributes?: Record<string, unknown>) => {
      // Without randomUUID (an http page, an old browser), 16 random digits: Ortto merges on key and created together.
      const key = w.crypto?.randomUUID?.() ?? `${Math.random()}`;
      attributes = copy(attributes);
      change(() => {
        const { i, q } = mem;
        q.push({
          a: { activity_id: id.startsWith("act:") ? id : `act:cm:${id}`, key, created: new Date().toISOString(), attributes, fields: i?.f },
          t: i?.t,
        });
        const over = q.length - MAX_QUEUE;
        if (over > 0) {
          q.splice(0, over);
          mem.d += over;
          warn("dropped", mem.d);
        }
      });
      kick();
    };

    const identify = (fields: Record<string, unknown>, token?: string) => {
      const f: Record<string, unknown> = {};
      for (let [k, v] of Object.entries(copy(fields))) {
        k = k === "phone" ? "phn::phone" : shorthand.test(k) ? `str::${k}` : k;
        // The relay refuses an email with spaces around it (a 400 that would lose every event).
        f[k] =
          typeof v !== "string"
            ? v
            : k === "phn::phone"
              ? { phone: v.replace(/[^\d+]/g, ""), parse_with_country_code: true }
              : k === "str::email"
                ? v.trim()
                : v;
      }
      change(() => {
        const old = mem.i;
        // A new person (identifying fields after identifying fields) replaces the identity; else the fields are merged in.
        const i = known(f) && known(old?.f) ? { f, t: token } : { f: { ...old?.f, ...f }, t: token ?? old?.t };
        mem.i = i;
        // Held events take the identity; they go once it has an identifying field.
        for (const item of mem.q) {
          if (!known(item.a.fields)) {
            item.a.fields = i.f;
            item.t = i.t;
          }
        }
      });
      kick();
    };

    api = safe((command: unknown, a?: unknown, b?: unknown) => {
      const o = b ?? {};
      if (command === "track" && typeof a === "string" && a && isObject(o)) track(a, o);
      else if (command === "identify" && isObject(a) && isObject(o) && typeof (o.token ?? "") === "string") identify(a, o.token as string);
      else if (command === "consent" && typeof a === "boolean") {
        if (a) {
          mem.c = true;
          write();
          flush();
        } else {
          // Forget everything but the refusal itself.
          mem = { ...empty(), c: false };
          put(mem);
        }
      } else if (command === "reset")
        change(() => {
          delete mem.i;
          mem.q = mem.q.filter((i) => known(i.a.fields));
        });
      else warn("ignored", command, a, b);
    }) as Relay;

    // Global Privacy Control: nothing is sent, and nothing kept from before.
    blocked ? put() : read();

    w.addEventListener("pagehide", hide);
    doc.addEventListener("visibilitychange", () => doc.hidden && hide());
    w.addEventListener("online", flush);

    if (pageviews) {
      let last: string | undefined;
      const view = safe(() => {
        // The hash is left out: it changes on in-page links, and may carry tokens.
        const href = w.location.href.split("#")[0] as string;
        if (href !== last) {
          track(pageviews, {
            "str:cm:page-url": clip(href),
            "str:cm:page-title": clip(doc.title),
            "str:cm:referrer": clip(last ?? doc.referrer),
          });
          last = href;
        }
      });
      // Routers set the title just after they navigate: let them.
      const soon = () => setTimeout(view, 100);
      const { history } = w;
      for (const name of ["pushState", "replaceState"] as const) {
        const original = history[name];
        history[name] = function (this: History, ...args: Parameters<History["pushState"]>) {
          original.apply(this, args);
          soon();
        };
      }
      w.addEventListener("popstate", soon);
      view();
    }
    // What earlier pages left unsent goes now, whatever its backoff said.
    flush();
  } catch {}
  return api;
}
