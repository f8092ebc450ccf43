/**
 * The relay client: queueing, identity, consent, batching, storage and retries.
 *
 * Design goals, in order: never throw into the page; never lose an event (every event is in
 * localStorage from the end of the call's task until the relay has taken it), whatever the number
 * of tabs; O(1) work per call; stay under 2.4 KB gzipped. So the code favours short, repeated
 * shapes that minify and compress well, and the stored format uses short property names fixed by
 * hand (never mangled: a new build must read an old queue).
 *
 * Storage: each page keeps its queue under a key of its own (`relay:<random>`), which no other
 * live page writes, so no tab can overwrite another's events (a read-modify-write of one shared
 * key is not atomic across tabs: Chromium caches storage per renderer). What tabs share is one
 * small key (`relay`), re-read before every change. A page that goes marks its queue as left; the
 * next page to start adopts it.
 */
import type { ActivityInput } from "../../shared/activities.ts";
import type { Relay, RelayOptions } from "./relay.d.ts";

/**
 * An activity as the snippet sends it: Ortto's shape, with `created` in milliseconds since 1970,
 * which the relay writes as Ortto's ISO 8601 string (an older build's stored events carry the string).
 */
export type WireActivity = Omit<ActivityInput, "created"> & { created?: number | string };

/** One event in the queue. */
export interface Item {
  /** The activity as it goes on the wire; `key` and `created` are fixed at the call, for Ortto's merging of re-sends. */
  a: WireActivity;
  /** The identity token of the person in `a.fields` (a batch carries one token, so one person's token). */
  t?: string;
  /** Leased until this time (ms): a request carrying it may be in flight, so nobody else sends it before then. */
  l?: number;
  /** Send alone: it was in a batch the relay refused (a 400, a 413, or a 429 for the daily limit), so one bad event cannot sink the others. */
  o?: 1;
  /** This device's clock at the call (ms), from which `created` is corrected (once) if the relay finds it in the future. */
  w?: number;
  /** The shared state's `n` at the call: a held event whose `n` is not the current one was tracked before a `reset()`. */
  n?: number;
}

/** What every tab shares, under STORAGE_KEY; each change re-reads it first (a small object, written rarely). */
export interface State {
  /** The identity: person fields and token. */
  i?: { f: Record<string, unknown>; t?: string };
  /** Events given up on: dropped because a queue was full, refused by the relay for good, or too large to send. */
  d?: number;
  /** Consent: true granted, false refused (only without data-consent="required"), absent not asked. */
  c?: boolean;
  /** No request before this time (ms): the relay's Retry-After on a 429 or 5xx, honoured by every tab and page. */
  r?: number;
  /**
   * The relay's clock minus this device's (ms), from the relay's `Date` header (+500 ms: the middle
   * of its second): added to every `created`. Changed only by an answer that finds it over 1 s off.
   */
  o?: number;
  /** An older build's queue (one key for every tab); adopted like an abandoned tab's. */
  q?: Item[];
  /**
   * Which `reset()` this is, in any tab (a count): held events stamped with another were tracked
   * before it, are nobody's, and are never sent. A count, not a time: a clock that steps back must
   * not make later events look older.
   */
  n?: number;
}

/** One tab's queue, under `relay:<random>`: only that tab writes it, until it is abandoned and another page adopts it. */
export interface TabQueue {
  /** Written at (ms): a heartbeat while the tab lives; 0 once the page is hidden for good (pagehide). */
  h: number;
  /** Failed sends in a row (network, 5xx, 429). */
  f: number;
  /** Its events not yet taken by the relay, oldest first; those without an identifying field are held for `identify`. */
  q: Item[];
}

export const STORAGE_KEY = "relay";
/** Queue bound, per tab: the oldest events go first (counted in `d`). */
export const MAX_QUEUE = 100;
/** A batch is sent at this many events, or after FLUSH_MS. */
export const MAX_BATCH = 10;
export const FLUSH_MS = 1000;
/** keepalive allows 64 KiB of body in flight per page; activities stay under this, leaving room for the envelope. */
export const MAX_BATCH_BYTES = 60000;
/**
 * How long a batch sent by a page that has since gone stays untouched: its request (keepalive
 * outlives the page) may still be answered. After it, the page that adopted it sends it again,
 * with the same key and created, and Ortto merges a second arrival.
 */
export const LEASE_MS = 10000;
/** A request unanswered this long is given up for lost and its batch sent again (a backstop: `send` aborts it after 15 s). */
export const IN_FLIGHT_MS = 60000;
/**
 * A tab's queue not written for this long is adopted by the next page that looks: its tab died
 * without pagehide (a crash), or sits idle (and then learns from the storage event that its events
 * are another page's now). Longer than IN_FLIGHT_MS, so that a request still in flight is not sent twice.
 */
export const STALE_MS = 120000;
/**
 * How long an event may wait for an identity: an anonymous page view held for days would be
 * credited to whoever identifies next (on a shared computer, someone else), dated days earlier.
 * Older held events are given up on: counted and, with debug, explained ("expired").
 */
export const HOLD_MS = 216e5;
/**
 * A 429 whose Retry-After (seconds) is longer than this is a refusal: Ortto's daily limit per
 * contact and activity, which waiting for would hold the queue for up to a day.
 */
export const MAX_RETRY_AFTER = 3600;
/** The relay refuses a `created` more than 5 minutes ahead of its clock; one further ahead than this was never recorded. */
const FUTURE_MS = 301000;

/**
 * The wait before the next attempt after `failures` failures in a row: a step that doubles
 * from 1 s up to 64 s, times a random 1–2 (1–2 s, 2–4 s, … 64–128 s), so that many pages
 * coming back at once do not retry in step.
 */
export const backoff = (failures: number, random = Math.random()) => 500 * 2 ** Math.min(failures, 7) * (1 + random);

// Aliases of what recurs, so it minifies to one letter.
const { stringify, parse } = JSON;
/** An object that is not an array or null (from any realm: an iframe's objects have their own Object). */
const isObject = (x: unknown): x is Record<string, unknown> => !!x && typeof x === "object" && !Array.isArray(x);
/** A deep copy, so later changes by the page do not reach the queue; it throws on what JSON cannot carry. */
const copy = <T>(x: T): T => x && parse(stringify(x));
/** The snippet's keys: the shared state and every tab's queue. */
const ours = /^relay(:|$)/;
/**
 * Person fields that identify someone, in Ortto's ids and the shorthands the relay expands: the
 * relay refuses an activity without one (Ortto records activities only for identified people).
 */
const identifying = ["str::email", "str::ei", "phn::phone", "email", "ei", "phone"];
/** Whether person fields include an identifying one (not blank): only then may an event go (until then it is held). */
const known = (f?: Record<string, unknown>) => identifying.some((k) => /\S/.test((f?.[k] as string) ?? ""));

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

    /** The shared state as this tab last read it (and, before consent, as it holds it in memory). */
    let mem: State = {};
    /** This tab's queue: in memory, and under its own key, which no other live tab writes. */
    let q: Item[] = [];
    /** Its failed sends in a row. */
    let f = 0;
    /** Events dropped from the queue since the last write, to add to `d`. */
    let dropped = 0;
    /** The pending flush, if any. */
    let timer: ReturnType<typeof setTimeout> | 0 | undefined;
    /** Until when this tab has a request in flight (one at a time, so keepalive's 64 KiB holds). */
    let busy = 0;
    /** A write of the queue is due at the end of this task. */
    let due = 0;
    /** The page is hidden for good (pagehide): its queue is for the next page, and late answers are ignored. */
    let gone: boolean | 0 = 0;
    /** Set by page hide until the end of its task: what the site tracks in its own hide handlers goes at once. */
    let hiding: unknown;
    /**
     * This tab's key holds its queue as last written (what a page restored from the back/forward
     * cache finds missing then was adopted by another page; not so after a failed write, a full quota).
     */
    let kept: unknown;
    /** Events tracked by this page: after `own`, a key no other page's event has (10 digits, so that no key is part of another). */
    let count = 1e9;
    /**
     * This page's key, and the start of its events' keys: random from `crypto`, not `Math.random`,
     * which a page may have seeded (the same in every tab: their keys would clash). `randomUUID` needs
     * a secure context: an http page falls back on Math.random.
     */
    const own = `${STORAGE_KEY}:${crypto.randomUUID?.() ?? Math.random()}`;

    const blocked = nav.globalPrivacyControl === true && gpc !== "ignore";
    /** May we send and store? Refused or not-yet-given consent keeps everything in memory. */
    const allowed = () => !blocked && (mem.c ?? mode !== "required");
    const store = () => w.localStorage;
    /** A stored value, parsed (0 when missing; undefined when storage or the value is broken). */
    const get = (key: string) => {
      try {
        return parse((store().getItem(key) || 0) as string);
      } catch {}
    };
    /** Stores a value (and returns it), or removes the key. A failure (a full quota) only costs this write. */
    const put = (key: string, value?: unknown) => {
      try {
        value ? store().setItem(key, stringify(value)) : store().removeItem(key);
        return value;
      } catch {
        // A write failed (a full quota): this tab's queue stays in memory, and no stale copy of it
        // is left behind to be sent twice (which frees room too).
        kept = value && put(own);
      }
    };
    /** Reads the shared state; when storage is broken, this tab goes on with what it holds. */
    const read = () => {
      try {
        mem = parse(store().getItem(STORAGE_KEY) as string) || {};
      } catch {}
    };
    /** A change to the shared state: read what other tabs wrote, change it, write it back, in one task. */
    const change = (g: () => void) => {
      allowed() && read();
      g();
      allowed() && put(STORAGE_KEY, mem);
    };
    /** Every key of the snippet (the shared state and every tab's queue). */
    const keys = () => Object.keys(store()).filter((k) => ours.test(k));
    /** Removes every key of the snippet. */
    const wipe = () => {
      for (const k of keys()) put(k);
    };

    /** Writes this tab's queue now (or removes its key when empty), with the time (`h`), or 0 once the page is gone. */
    const persist = () => {
      due = 0;
      if (dropped) {
        change(() => {
          mem.d = ~~(mem.d as number) + dropped;
        });
        warn("dropped", mem.d);
        dropped = 0;
      }
      if (allowed()) kept = put(own, q[0] && { h: gone ? 0 : now(), f, q });
    };
    /** Writes this tab's queue at the end of the task: one write for any number of calls. */
    const save = () => {
      if (!due) {
        due = 1;
        queueMicrotask(safe(persist));
      }
    };
    /**
     * Adopts the queues of pages that are gone (pagehide, or not written for STALE_MS), and an
     * older build's: their events join this tab's queue with their leases, and their keys go.
     */
    const scan = safe(() => {
      if (allowed() && !gone) {
        let n = 0;
        for (const k of keys()) {
          const v = k !== own && get(k);
          if (!v?.q || (v.h || 0) > now() - STALE_MS) continue;
          n = q.push(...(v.q as Item[]));
          delete v.q;
          put(k, k === STORAGE_KEY && v);
        }
        if (n) {
          save();
          later(0);
        }
      }
    });
    const later = (ms: number) => {
      clearTimeout(timer);
      timer = setTimeout(flush, ms);
    };
    /**
     * After a new event: send soon (at once at MAX_BATCH), but never before a pending backoff. In or
     * after page hide, at the end of the task: a site's hide handler tracking 20 events sent 20 requests.
     */
    const kick = () =>
      gone || hiding ? queueMicrotask(safe(out)) : !f && q[MAX_BATCH - 1] ? later(0) : timer || later(f ? backoff(f) : FLUSH_MS);

    /**
     * The next batch from the queue: identified events not leased, of one identity token, at most
     * MAX_BATCH of them and MAX_BATCH_BYTES in all. On the way, it removes from the queue what must
     * never be sent: events held since before a `reset()` (in this tab or any other), and events too
     * large for any request (given up on: counted and, with debug, explained).
     */
    const take = () => {
      const batch: Item[] = [];
      const { i: id, n } = mem;
      let bytes = 0;
      // (`return save()`: the event leaves the queue, and the queue is written at the end of the task.)
      q = q.filter((i) => {
        if (!known(i.a.fields)) {
          // Held since before a reset: the person who was here then is not the one identified now.
          // (Reset counts are small integers or unset: `^` is non-zero exactly when they differ, in fewer bytes than `!==`.)
          if ((i.n as number) ^ (n as number)) return save();
          // Held too long: not the next person's.
          if (now() - (i.w as number) > HOLD_MS) {
            warn("expired", i.a);
            dropped++;
            return save();
          }
          // Held events (no identifying field yet) take the identity as it now is.
          if (id) {
            i.a.fields = id.f;
            i.t = id.t;
          }
        }
        const first = batch[0];
        // (No `!(a > b)` in this file: the minifier's unsafe_comps makes it `a <= b`, false for undefined.)
        if (!known(i.a.fields) || (i.l as number) > now() || batch[MAX_BATCH - 1] || (first && (i.t !== first.t || i.o || first.o)))
          return 1;
        // UTF-8 takes at most 3 bytes per UTF-16 unit: a bound (which covers the commas too), not a Blob per event.
        const size = stringify(i.a).length * 3;
        // Too large for any request (keepalive carries 64 KiB): it would stay queued forever.
        if (size > MAX_BATCH_BYTES) {
          warn("too large", i.a);
          dropped++;
          return save();
        }
        if (bytes + size <= MAX_BATCH_BYTES) {
          batch.push(i);
          bytes += size;
        }
        return 1;
      });
      return batch;
    };

    /** Sends a batch, leased (so that a page adopting this queue leaves it alone) until it is answered. */
    const send = (batch: Item[]) => {
      busy = now() + IN_FLIGHT_MS;
      for (const i of batch) i.l = now() + LEASE_MS;
      save();
      // text/plain (a string body) makes this a CORS "simple request": no preflight. keepalive lets
      // it outlive the page. The async wrapper turns a synchronous throw into a failure like any other.
      (async () =>
        w.fetch(url, {
          method: "POST",
          keepalive: true,
          // A request unanswered this long is given up (a hung relay): its batch is kept and retried.
          // (Browsers without AbortSignal.timeout, Safari before 16, wait as long as the browser does.)
          signal: (w as unknown as typeof globalThis).AbortSignal.timeout?.(15e3),
          body: stringify({ activities: batch.map((i) => i.a), identity_token: batch[0]?.t }),
        }))()
        .then((r) =>
          r
            .text()
            .then((text) =>
              done(batch, r.status, text, +(r.headers.get("retry-after") as string), Date.parse(r.headers.get("date") as string)),
            ),
        )
        // Refused at page hide (keepalive's 64 KiB is shared with the site's own beacons and fetches): sent again in halves.
        .catch(() => ((gone || hiding) && batch[1] ? [batch.splice(batch.length / 2), batch].map(send) : done(batch, 0)));
    };

    const flush = safe(() => {
      clearTimeout(timer);
      timer = 0;
      if (!allowed() || busy > now() || gone) return;
      // A pause the relay asked for (Retry-After, stored by whichever tab or page heard it) holds everything.
      read();
      const pause = (mem.r as number) - now();
      if (pause > 0) return later(pause);
      const batch = take();
      // Events leased by a page that has gone go once the lease is over.
      batch[0] ? send(batch) : q.some((i) => (i.l as number) > now()) && later(LEASE_MS);
    });

    /**
     * The relay answered `status` with `text`, `after` (its Retry-After in seconds) and `date`
     * (its clock, ms). Status 0: no answer; NaN: no such header.
     */
    const done = safe((batch: Item[], status: number, text?: string, after?: number, date?: number) => {
      busy = 0;
      // Gone: the next page decides, once the lease is over.
      if (gone) return;
      // The relay's clock minus ours. `Date` is in whole seconds, rounded down: +500 ms centres it.
      const skew = (date as number) + 500 - now();
      // For every later `created` of every tab; changed only when it is over 1 s off (never the
      // jitter of `Date`'s seconds, which would stamp events out of order and write to every tab).
      // (Squared: over 1 s either way. NaN, no offset yet, is never under it.)
      (skew - (mem.o as number)) ** 2 < 1e6 ||
        ((date as number) > 0 &&
          change(() => {
            mem.o = skew;
          }));
      // A batch refused for a `created` in the future was never recorded (nor was any earlier
      // try of it: the relay's clock only moves on), so each such event is corrected, once.
      let fixed = 0;
      if (status === 400)
        for (const i of batch) {
          // Corrected once: the new `created` is behind the relay's clock, so it never qualifies again.
          // (In ms: an earlier build's ISO string is never more than a number, and is not corrected.)
          if ((i.a.created as number) > (date as number) + FUTURE_MS) {
            fixed = 1;
            i.a.created = (i.w || now()) + skew;
          }
        }
      const sent = status > 199 && status < 300;
      // A 4xx would fail again: drop it. So would a 429 asking for more than an hour (Ortto's daily limit per contact).
      const refused = !fixed && status > 399 && status < 500 && (status !== 429 || (after as number) > MAX_RETRY_AFTER);
      // But a refused batch of several is first split up: one bad, too large or over-limit event must not sink the others.
      const split = refused && batch[1] && [400, 413, 429].includes(status);
      if (sent || (refused && !split)) q = q.filter((i) => !batch.includes(i));
      else
        for (const i of batch) {
          delete i.l;
          if (split) i.o = 1;
        }
      if (refused && !split) dropped += batch.length;
      // Under `debug`, every answer but a plain 200, with its body: a refusal and its reason, a retry, and a 202
      // (taken but not forwarded yet: queued, or a crawler's verdict with its reason).
      status - 200 && warn(status, text);
      if (sent) f = 0;
      else if (!refused && !fixed) {
        f++;
        // No request before Retry-After is over; the backoff still applies.
        (after as number) > 0 &&
          change(() => {
            mem.r = now() + (after as number) * 1000;
          });
      }
      save();
      sent || refused || fixed ? flush() : later(backoff(f));
    });

    /**
     * Page hidden: every ready batch goes now, whatever is in flight or failed before, in as many
     * requests as keepalive's 64 KiB holds (the string's length: its bytes when ASCII); what is
     * leased (in flight) is not sent again. Offline or during the relay's pause, the events stay for the next page.
     */
    const out = () => {
      let room = 64e3;
      // Not during a pause the relay asked for (Retry-After): a visitor moving quickly between
      // pages would send at every page hide (the events stay stored for the next page).
      if (allowed() && nav.onLine)
        for (read(); (mem.r || 0) < now(); ) {
          const b = take();
          room -= stringify(b.map((i) => i.a)).length;
          if (!b[0] || room < 0) break;
          send(b);
        }
    };

    /**
     * Page hidden (maybe for good): send what is ready, and leave the rest stored. On pagehide the
     * queue is marked abandoned, for the next page to adopt.
     */
    const hide = safe((e: Event) => {
      if (!allowed() || gone) return;
      hiding = setTimeout(() => (hiding = 0));
      // A navigation the page-view look has not seen yet is one still.
      view();
      out();
      // Gone for good at pagehide, not at visibilitychange (of the two, only "pagehide" sorts before "q").
      gone = e.type < "q";
      persist();
    });

    const track = (id: string, attributes?: Record<string, unknown>) => {
      // This page's key and a count: unique among every page's events (Ortto merges on key and created together).
      const key = own + ++count;
      // The identity and reset count as stored now: another tab (or a page this one was frozen in
      // the back/forward cache behind) may have logged out and in since this tab last read them.
      // (Nothing stored, before consent, or storage broken: this tab's own, in memory.)
      const stored = get(STORAGE_KEY);
      const { i } = stored || mem;
      const t = now();
      // At the cap, the oldest goes (adopted queues may take it over: they are not cut, only not added to).
      if (q[MAX_QUEUE - 1]) {
        q.shift();
        dropped++;
      }
      q.push({
        a: {
          // `logged-in` is `act:cm:logged-in` to the relay.
          activity_id: id,
          key,
          // In ms: the relay writes the ISO 8601 string. (The offset is whole ms already; `~~` would cut it to 32 bits, ±24.8 days.)
          created: t + ((mem.o as number) || 0),
          attributes: copy(attributes),
          fields: i?.f,
        },
        t: i?.t,
        w: t,
        // (Nothing stored, before consent: a reset then was this tab's, and `reset()` forgets this
        // tab's held events itself.)
        n: (stored ?? mem).n,
      });
      save();
      kick();
    };

    const identify = (fields: Record<string, unknown>, token?: string) => {
      // The relay expands the shorthands (`email` → `str::email`, a phone string → Ortto's phone object) and trims the email.
      const f = copy(fields);
      change(() => {
        const old = mem.i;
        // A new person (identifying fields after identifying fields) replaces the identity; else the fields are merged in.
        mem.i = known(f) && known(old?.f) ? { f, t: token } : { f: { ...old?.f, ...f }, t: token ?? old?.t };
      });
      // Held events take the identity when the next batch is taken; they go once it has an identifying field.
      kick();
    };

    /**
     * After the shared state may have changed (consent here, or anything in another tab; `was`:
     * allowed before, `i`: the identity held before): consent withdrawn forgets this tab's queue;
     * consent given stores what this tab held in memory and sends it; held events take the identity.
     */
    const joined = (was: boolean, i?: State["i"]) => {
      // Refused (here or in another tab): nothing of this tab's is kept, in memory or stored.
      if (!allowed()) {
        q = [];
        put(own);
      } else {
        if (!was && i && !mem.i) change(() => (mem.i = i));
        if (was) kick();
        else {
          save();
          later(0);
        }
      }
    };

    api = safe((command: unknown, a?: unknown, b?: unknown) => {
      const o = b ?? {};
      if (command === "track" && typeof a === "string" && a && isObject(o)) track(a, o);
      else if (command === "identify" && isObject(a) && isObject(o) && typeof (o.token ?? "") === "string") identify(a, o.token as string);
      else if (command === "consent" && typeof a === "boolean") {
        const was = allowed();
        const { i } = mem;
        if (a) {
          mem.c = a;
          change(() => (mem.c = a));
          joined(was, i);
        } else {
          // Forget everything, every tab's queue too, and remember only the refusal, and only
          // where it is needed (without data-consent="required", where not asked means yes).
          q = [];
          mem = { c: a };
          wipe();
          mode !== "required" && put(STORAGE_KEY, mem);
        }
      } else if (command === "reset") {
        change(() => {
          delete mem.i;
          mem.n = -~(mem.n as number);
        });
        q = q.filter((i) => known(i.a.fields));
        save();
      } else warn("ignored", command, a, b);
    }) as Relay;

    // Other tabs: a change of the shared state (identity, consent, pause, clock), or this tab's
    // queue adopted by another page (while this one sat idle or frozen).
    w.addEventListener(
      "storage",
      safe((e: StorageEvent) => {
        const { key: k, oldValue, newValue } = e;
        if (k === own) {
          // Adopted: what it held is another page's now (a key is never part of another: `count`'s fixed width).
          if (!newValue) q = q.filter((i) => !oldValue?.includes(i.a.key as string));
        } else if (k === STORAGE_KEY) {
          const was = allowed();
          const { i } = mem;
          read();
          joined(was, i);
        }
      }),
    );

    // Global Privacy Control: nothing is sent, and nothing kept from before.
    if (blocked) wipe();
    else {
      read();
      scan();
    }

    w.addEventListener("pagehide", hide);
    doc.addEventListener("visibilitychange", (e) => doc.hidden && hide(e));
    w.addEventListener("online", flush);
    /** The last page view's URL ("" after a back/forward cache restore: the next is one, with `document.referrer`). */
    let last: string | undefined;
    /**
     * The URL without the hash (it changes on in-page links, and may carry tokens), cut to 2,000
     * characters, as are the title and the referrer: the relay cuts them to Ortto's 255, and a
     * longer one (a SPA's state in the URL) would make the event too large to send at all.
     */
    const here = () => (w.location.href.split("#")[0] as string).slice(0, 2e3);
    /** A page view (with data-pageviews), unless the URL is the last one's. */
    const view = safe(() => {
      const href = here();
      if (pageviews && href !== last) {
        track(pageviews, {
          "page-url": href,
          "page-title": doc.title.slice(0, 2e3),
          referrer: (last || doc.referrer).slice(0, 2e3),
        });
        last = href;
      }
    });
    // Back from the back/forward cache: a page view, and this page's queue is its own again,
    // unless another page adopted it meanwhile (its key, written, is gone; a queue that could not
    // be written, a full quota, is kept in memory).
    w.addEventListener(
      "pageshow",
      safe((e: PageTransitionEvent) => {
        if (e.persisted) {
          // (Frozen, this page heard no storage event: its page view takes the identity as stored now, see track.)
          gone = 0;
          if (kept && !get(own)) q = [];
          last = "";
          view();
          // Alive again (h no longer 0), and what others left is adopted.
          save();
          scan();
          kick();
        }
      }),
    );
    if (pageviews) {
      // A single-page app's navigations (pushState, replaceState, back and forward): the URL, looked
      // at every 300 ms, is a page view once it has stayed for one look, so that the router has set
      // the new title. Nothing of the page's (history) is wrapped.
      let seen: string;
      setInterval(() => {
        const href = here();
        if (href === seen) view();
        seen = href;
      }, 300);
    }
    // After the loader's queued calls (boot replays them as this returns): a logout page's reset or a
    // login page's identify comes before its page view.
    queueMicrotask(view);
  } catch {}
  return api;
}
