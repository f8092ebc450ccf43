/**
 * The relay client: queueing, identity, consent, batching, storage and retries.
 *
 * Design goals, in order: never throw into the page; never lose an event (every event is in
 * localStorage from its call until the relay has taken it), whatever the number of tabs; O(1)
 * work per call on the main thread; stay small. So the code favours short, repeated shapes that
 * minify and compress well, and the stored format uses short property names fixed by hand (never
 * mangled: a new build must read an old queue).
 *
 * Storage: the queue lives in memory; each event is also stored under a key of its own
 * (`relay:<tab>|<n>`, written once at the call and removed once the relay has it), so a call
 * costs one small write whatever the queue holds, and other tabs' `storage` events carry one
 * event, never a queue. Each page with events keeps a small heartbeat key (`relay:<tab>`), which
 * no other live page writes. What tabs share is one small key (`relay`), re-read before every
 * change and at every stamp. A page that goes (pagehide), or whose heartbeat stops, is adopted by
 * a live page.
 *
 * Time: within a page, the device's clock as it was at the start moved on by `performance.now()`
 * (monotonic: a step of the device's clock changes nothing). Each request carries that time at
 * sending (`t`), by which the relay corrects every `created` (stamped in the same clock) to its
 * own. Across pages nothing is compared in device time: a pause is bounded by its stored length,
 * a heartbeat is judged by whether it changes, a lease by its length.
 */
import type { ActivityInput } from "../../shared/activities.ts";
import type { Relay, RelayOptions } from "./relay.d.ts";

/**
 * An activity as the snippet sends it: Ortto's shape, with `created` in milliseconds since 1970 by
 * the page's clock, which the relay corrects by the request's `t` and writes as Ortto's ISO 8601
 * string (an older build's stored events carry the string).
 */
export type WireActivity = Omit<ActivityInput, "created"> & { created?: number | string };

/** One event in the queue. */
export interface Item {
  /** The activity as it goes on the wire; `key` and `created` are fixed at the call, for Ortto's merging of re-sends. */
  a: WireActivity;
  /** Its storage key (`relay:<tab>|<n>`, the tab that holds it now). */
  k: string;
  /** The identity token of the person in `a.fields` (a batch carries one token, so one person's token). */
  t?: string;
  /**
   * Leased until this time (the page's clock): a request carrying it may be in flight, so nobody
   * else sends it before then. Stored only by page hide's requests; a page adopting it waits at
   * most LEASE_MS, whatever the clocks did.
   */
  l?: number;
  /** The shared state's `n` at the call: a held event whose `n` is not the current one was tracked before a `reset()`. */
  n?: number;
  /** In memory only: it could not be stored (a full or disabled storage); counted lost if its page goes with it. */
  m?: boolean;
}

/** What every tab shares, under STORAGE_KEY; each change re-reads it first (a small object, written rarely). */
export interface State {
  /** The identity: person fields and token. */
  i?: { f: Record<string, unknown>; t?: string };
  /** Events given up on: dropped because a queue was full, refused by the relay for good, too large, held too long, or not storable when the page went. */
  d?: number;
  /** Consent: true granted, false refused (only without data-consent="required"), absent not asked. */
  c?: boolean;
  /** No request before this time (the writing page's clock, ms): the relay's Retry-After on a 429 or 5xx, honoured by every tab and page… */
  r?: number;
  /** … and never for longer than this (ms) from when a page reads it, whatever the device's clock did since. */
  p?: number;
  /**
   * Which `reset()` this is, in any tab (a count): held events stamped with another were tracked
   * before it, are nobody's, and are never sent. A count, not a time: a clock that steps back must
   * not make later events look older.
   */
  n?: number;
}

/** One tab's heartbeat, under `relay:<tab>`, while it holds events: only that tab writes it, until it is gone and a live page adopts its events. */
export interface TabQueue {
  /** The page's clock, rewritten every HEARTBEAT_MS while the page lives (other pages only look whether it changes); 0 once the page is hidden for good (pagehide). */
  h: number;
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
/** A live page holding events rewrites its heartbeat this often (a hidden tab's timers still run once a minute). */
export const HEARTBEAT_MS = 30000;
/**
 * A heartbeat seen unchanged this long by a live page (in that page's monotonic time, so no
 * clock step can fake it) is a dead tab's (a crash, or frozen): the live page adopts its events.
 */
export const STALE_MS = 120000;
/**
 * How long an event may wait for an identity: an anonymous page view held for days would be
 * credited to whoever identifies next (on a shared computer, someone else), dated days earlier.
 * Older held events are given up on: counted and, with debug, explained (`E`).
 */
export const HOLD_MS = 216e5;
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
/** An object that is not an array or null (from any realm: an iframe's objects have their own Object). */
const isObject = (x: unknown): x is Record<string, unknown> => !!x && typeof x === "object" && !Array.isArray(x);
/** A deep copy, so later changes by the page do not reach the queue; it throws on what JSON cannot carry. */
const copy = <T>(x: T): T => x && parse(stringify(x));
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
    const { endpoint, consent: mode, gpc, debug, pageviews, hash, window: w = window } = options;
    const { navigator: nav, document: doc, location: loc } = w;
    const url = endpoint.replace(/\/*$/, "/v1/activities/create");
    /**
     * The page's clock: the device's as it was at the start, moved on monotonically (no step of the
     * device's clock reaches it), in ms with fractions (the relay rounds `created`).
     */
    const start = Date.now() - performance.now();
    const now = () => start + performance.now();
    /** `data-debug`: an answer's status and body, or a one-letter code (snippet/README.md) and what it is about. */
    const warn = (...args: unknown[]) => debug && console.warn("relay:", ...args);
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
    /** This tab's queue, in memory; each event is also stored under its own key. */
    let q: Item[] = [];
    /** Its failed sends in a row. */
    let f = 0;
    /** Events given up on since the last write, to add to `d`. */
    let dropped = 0;
    /** The pending flush, if any. */
    let timer: ReturnType<typeof setTimeout> | 0 | undefined;
    /**
     * This tab has a request in flight (one at a time, so keepalive's 64 KiB holds), until it is
     * answered or aborted at 15 s (a browser without `AbortSignal.timeout` waits as long as it does).
     */
    let busy: unknown;
    /** A tally and heartbeat are due at the end of this task. */
    let due: unknown;
    /** The page is hidden for good (pagehide): late answers are ignored, and a live page may adopt what it leaves. */
    let gone: unknown;
    /** Set by page hide until the end of its task: what the site tracks in its own hide handlers goes at once. */
    let hiding: unknown;
    /** The last write of the shared state failed (a full storage): what this tab holds in memory is the truth. */
    let stuck: unknown;
    /** Events tracked by this page: after `own`, a key no other page's event has (10 digits, so that no key is part of another). */
    let count = 1e9;
    /** When this page first saw each heartbeat (the page's clock): one unchanged for STALE_MS is a dead tab's. */
    const seen: Record<string, number> = {};
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
    /** Stores a value, or removes the key; true when it worked (a full or disabled storage: undefined). */
    const put = (key: string, value?: unknown) => {
      try {
        value ? store().setItem(key, stringify(value)) : store().removeItem(key);
        return 1;
      } catch {}
    };
    /** Reads the shared state (unless this tab could not write its last change); when storage is broken, this tab goes on with what it holds. */
    const read = () => {
      if (!stuck) mem = (get(STORAGE_KEY) ?? mem) || {};
    };
    /** The shared state as it is now, unless this tab holds it in memory only (no consent yet). */
    const fresh = () => allowed() && read();
    /** A change to the shared state: read what other tabs wrote, change it, write it back, in one task. */
    const change = (g: () => void) => {
      fresh();
      g();
      if (allowed()) stuck = !put(STORAGE_KEY, mem);
    };
    /** Stores an event under its key; one that cannot be (a full or disabled storage) lives in memory only, with a warning (`U`). */
    const keep = (i: Item) => {
      // The tab's heartbeat says whose it is (a tab holding events has one: written before its first
      // event, then every HEARTBEAT_MS, not at every call, which would cost every other tab a storage event).
      // Before, not after: an event that takes the storage's last room would be stored with no heartbeat, which no page adopts.
      q[1] || persist();
      i.m = allowed() && !put(i.k, i);
      i.m && warn("U", i.a);
    };
    /** Removes an event's key (and returns undefined: a queue filter drops it). */
    const forget = (i: Item) => void put(i.k);
    /** Every key of the snippet: the shared state, every tab's heartbeat and every event (the regular expression in place: named, 6 B more). */
    const keys = () => Object.keys(store()).filter((k) => /^relay(:|$)/.test(k));
    /** Removes every key of the snippet. */
    const wipe = () => {
      for (const k of keys()) put(k);
    };

    /** At the end of the task: what was given up on is added to `d`, and the heartbeat is written (removed when the queue is empty; 0 once the page is gone). */
    const persist = () => {
      due = 0;
      if (dropped) {
        change(() => {
          mem.d = ~~(mem.d as number) + dropped;
        });
        warn("D", mem.d);
        dropped = 0;
      }
      allowed() && put(own, q[0] && { h: gone ? 0 : now() });
    };
    /** Runs `persist` at the end of the task: once for any number of calls. */
    const save = () => {
      if (!due) {
        due = 1;
        queueMicrotask(safe(persist));
      }
    };
    /**
     * Adopts the events of pages that are gone: left (pagehide), or whose heartbeat this page has
     * seen unchanged for STALE_MS. Each joins this tab's queue under a key of this tab's. It reads
     * the heartbeats only, and the events of the pages it adopts.
     */
    const scan = safe(() => {
      if (allowed() && !gone) {
        // This page's heartbeat, while it holds events: written now, so that the look below finds it new (alive).
        persist();
        let n = 0;
        const all = keys();
        for (const k of all) {
          // Heartbeats only: not the shared state, not events (their keys have a `|`).
          if (k === STORAGE_KEY || k.includes("|")) continue;
          const raw = store().getItem(k) as string;
          // Alive: it has changed within STALE_MS of this page's clock (each heartbeat is seen once: it holds its writer's time).
          // (A value that is not JSON, a key of the site's in the snippet's names, is taken for a gone tab's, not
          // thrown on, which would stop every adoption.)
          const first = seen[raw] || now();
          seen[raw] = first;
          if ((get(k) as TabQueue | undefined)?.h && now() - first < STALE_MS) continue;
          for (const e of all)
            if (e.startsWith(`${k}|`)) {
              const i: Item | undefined = get(e);
              put(e);
              if (i) {
                // A request page hide sent may be in flight: left alone until its lease is over, at most LEASE_MS from now.
                i.l = Math.min(i.l as number, now() + LEASE_MS);
                i.k = `${own}|${++count}`;
                n = q.push(i);
                keep(i);
              }
            }
          put(k);
        }
        n && later(0);
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
     * never be sent: events held since before a `reset()` (in this tab or any other), events held
     * longer than HOLD_MS, and events too large for any request (given up on: counted and, with
     * debug, explained). Held events take the identity as the shared state has it now.
     */
    const take = () => {
      const batch: Item[] = [];
      fresh();
      const { i: id, n } = mem;
      let bytes = 0;
      q = q.filter((i) => {
        if (!known(i.a.fields)) {
          // Held since before a reset: the person who was here then is not the one identified now.
          // (Reset counts are small integers or unset: `^` is non-zero exactly when they differ, in fewer bytes than `!==`.)
          if ((i.n as number) ^ (n as number)) return forget(i);
          // Held too long: not the next person's. (Its `created`, in another page's clock, is off by at most that clock's step.)
          if (now() - (i.a.created as number) > HOLD_MS) {
            warn("E", i.a);
            dropped++;
            save();
            return forget(i);
          }
          // Held events (no identifying field yet) take the identity as it now is.
          if (id) {
            i.a.fields = id.f;
            i.t = id.t;
          }
        }
        const first = batch[0];
        if (!known(i.a.fields) || (i.l as number) > now() || batch[MAX_BATCH - 1] || (first && i.t !== first.t)) return 1;
        // UTF-8 takes at most 3 bytes per UTF-16 unit: a bound (which covers the commas too), not a Blob per event.
        const size = stringify(i.a).length * 3;
        // Too large for any request (keepalive carries 64 KiB): it would stay queued forever.
        if (size > MAX_BATCH_BYTES) {
          warn("B", i.a);
          dropped++;
          save();
          return forget(i);
        }
        if (bytes + size <= MAX_BATCH_BYTES) {
          batch.push(i);
          bytes += size;
        }
        return 1;
      });
      return batch;
    };

    /** Sends a batch, leased (so that a page adopting it leaves it alone) until it is answered. */
    const send = (batch: Item[]) => {
      busy = 1;
      for (const i of batch) {
        i.l = now() + LEASE_MS;
        // Stored too: a page adopting these events (this one gone) waits for the request's answer.
        keep(i);
      }
      // text/plain (a string body) makes this a CORS "simple request": no preflight. keepalive lets
      // it outlive the page. The async wrapper turns a synchronous throw into a failure like any other.
      // `a` and `i`: the request's `activities` and `identity_token`, which the relay expands.
      // `t`: the page's time at sending, by which the relay corrects every `created` to its own clock.
      (async () =>
        w.fetch(url, {
          method: "POST",
          keepalive: true,
          // A request unanswered this long is given up (a hung relay): its batch is kept and retried.
          // (Browsers without AbortSignal.timeout, Safari before 16, wait as long as the browser does.)
          signal: (w as unknown as typeof globalThis).AbortSignal.timeout?.(15e3),
          body: stringify({ a: batch.map((i) => i.a), i: (batch[0] as Item).t, t: now() }),
        }))()
        .then((r) => r.text().then((text) => done(batch, r.status, text, +(r.headers.get("retry-after") as string))))
        // Refused at page hide (keepalive's 64 KiB is shared with the site's own beacons and fetches): sent again in halves.
        .catch(() => ((gone || hiding) && batch[1] ? [batch.splice(batch.length / 2), batch].map(send) : done(batch, 0)));
    };

    /**
     * How long the relay's pause (Retry-After, stored by whichever tab or page heard it) has to run.
     * One longer than the relay asked for was written by a page whose clock is ahead of this one's
     * (the device's clock stepped back between them): it is not waited for (at most one request,
     * which the relay answers with a pause in this page's clock).
     */
    const paused = () => {
      read();
      const left = (mem.r as number) - now();
      // No pause (NaN) or one longer than asked: false, which compares as 0 (`> 0` false, `<= 0` true,
      // where NaN would stop page hide's sending); 3 B smaller than a 0 by `?:` and `|| 0`.
      return (left <= (mem.p as number) && left) as number;
    };

    const flush = safe(() => {
      clearTimeout(timer);
      timer = 0;
      if (!allowed() || busy || gone) return;
      const pause = paused();
      if (pause > 0) return later(pause);
      const batch = take();
      // Events leased by a page that has gone go once the lease is over.
      batch[0] ? send(batch) : q.some((i) => (i.l as number) > now()) && later(LEASE_MS);
    });

    /**
     * The relay answered `status` with `text` and `after` (its Retry-After in seconds; NaN: none).
     * Status 0: no answer.
     */
    const done = safe((batch: Item[], status: number, text?: string, after?: number) => {
      busy = 0;
      // Gone: a live page adopts what is left, once the lease is over.
      if (gone) return;
      const sent = status > 199 && status < 300;
      // A 4xx would fail again: drop it. So would a 429 asking for more than an hour (Ortto's daily
      // limit per contact). The relay refuses a batch whole only when every event of it is refused.
      const refused = status > 399 && status < 500 && (status !== 429 || (after as number) > MAX_RETRY_AFTER);
      if (sent || refused) q = q.filter((i) => !batch.includes(i) || forget(i));
      else
        for (const i of batch) {
          delete i.l;
          keep(i);
        }
      if (refused) dropped += batch.length;
      // Under `debug`, every answer but a plain 200, with its body: a refusal and its reason, a retry, and a 202
      // (taken but not forwarded yet: queued, or a crawler's verdict with its reason).
      status - 200 && warn(status, text);
      if (sent) {
        f = 0;
        // A 2xx names each activity it refused (the rest went on): those are given up, counted. (In JSON,
        // `"index":` is only ever a key: a string's quotes are escaped.)
        dropped += (text as string).split('"index":').length - 1;
      } else if (!refused) {
        f++;
        // No request before Retry-After is over (its length stored too: no clock step stretches it); the backoff still applies.
        (after as number) > 0 &&
          change(() => {
            mem.p = (after as number) * 1e3;
            mem.r = now() + mem.p;
          });
      }
      save();
      sent || refused ? flush() : later(backoff(f));
    });

    /**
     * Page hidden: every ready batch goes now, whatever is in flight or failed before, in as many
     * requests as keepalive's 64 KiB holds (the string's length: its bytes when ASCII); what is
     * leased (in flight) is not sent again. Offline or during the relay's pause, the events stay for the next page.
     */
    const out = () => {
      let room = 64e3;
      if (allowed() && nav.onLine)
        while (paused() <= 0) {
          const b = take();
          room -= stringify(b.map((i) => i.a)).length;
          if (!b[0] || room < 0) break;
          send(b);
        }
    };

    /**
     * Page hidden (maybe for good): send what is ready, and leave the rest stored. On pagehide the
     * page is gone: what could not be stored is counted as lost (`L`), and its heartbeat says it
     * left, for a live page to adopt the rest.
     */
    const hide = safe((e: Event) => {
      if (!allowed() || gone) return;
      hiding = setTimeout(() => (hiding = 0));
      // A navigation not recorded yet is one still.
      view();
      out();
      // Gone for good at pagehide, not at visibilitychange (of the two, only "pagehide" sorts before "q").
      gone = e.type < "q";
      // What is not stored (a full or disabled storage) is lost with the page, unless it comes back
      // from the back/forward cache: each is warned (`L`). Not counted in `d`: a full storage could
      // not store the count either, and a page restored would send them after all.
      if (gone) for (const i of q) i.m && warn("L", i.a);
      persist();
    });

    const track = (id: string, attributes?: Record<string, unknown>) => {
      // The identity and the reset count as the shared state has them now: another tab (or a page
      // this one was frozen in the back/forward cache behind) may have logged out and in since.
      fresh();
      const { i, n } = mem;
      // At the cap, the oldest goes (adopted queues may take it over: they are not cut, only not added to).
      // Tallied in `d` with the heartbeat (every HEARTBEAT_MS), an answer or the page's hiding, not at each call: at
      // the bound every call drops one, and a write of the shared state at each would cost every other tab a
      // storage event and a re-read (in bench:snippet, 0.96 / 2.7 ms median / p90 a call with five tabs, against 0.28 / 0.48).
      if (q[MAX_QUEUE - 1]) {
        forget(q.shift() as Item);
        dropped++;
      }
      const k = `${own}|${++count}`;
      const item: Item = {
        a: {
          // `logged-in` is `act:cm:logged-in` to the relay.
          activity_id: id,
          // This page's key and a count: unique among every page's events (Ortto merges on key and created together).
          key: k,
          // In ms, by the page's clock: the relay corrects it by the request's `t` and writes the ISO 8601 string.
          created: now(),
          attributes: copy(attributes),
          fields: i?.f,
        },
        k,
        t: i?.t,
        n,
      };
      q.push(item);
      keep(item);
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
     * consent given stores what this tab held in memory and sends it.
     */
    const joined = (was: boolean, i?: State["i"]) => {
      // Refused (here or in another tab): nothing of this tab's is kept, in memory or stored.
      if (!allowed()) {
        q = q.filter(forget);
      } else if (was) gone || kick();
      else {
        if (i && !mem.i) change(() => (mem.i = i));
        for (const i of q) {
          // Tracked before consent, after any reset then (which forgot what came before): the person's as stored now.
          i.n = mem.n;
          keep(i);
        }
        later(0);
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
        q = q.filter((i) => known(i.a.fields) || forget(i));
      } else warn("I", command, a, b);
    }) as Relay;

    // Other tabs: a change of the shared state (identity, consent, pause). Every other key's event
    // (a heartbeat, another tab's event) costs nothing.
    w.addEventListener(
      "storage",
      safe((e: StorageEvent) => {
        if (e.key === STORAGE_KEY) {
          const was = allowed();
          const { i } = mem;
          stuck = 0;
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
    // A live page says so (while it holds events), and adopts what pages that died left, without a page load.
    setInterval(scan, HEARTBEAT_MS);

    w.addEventListener("pagehide", hide);
    doc.addEventListener("visibilitychange", (e) => doc.hidden && hide(e));
    w.addEventListener("online", flush);
    /** The last page view's URL ("" after a back/forward cache restore: the next is one, with `document.referrer`), and its path (without queries). */
    let last: string | undefined;
    let path: string | undefined;
    /**
     * A page view (with data-pageviews), unless the path is the last one's: a change of the query
     * alone (UTM stripping, search as you type) is no page view, nor one of the hash unless hash
     * routes count (data-hash), and then a change of the hash route's query alone is none either.
     */
    const view = safe(() => {
      // The URL, without the hash unless hash routes count (it may carry tokens); the path is the
      // whole URL without its queries (a hash route after a long query is still told apart), and
      // without an empty hash route (`#/`, `#`): a hash router's rewrite of a landing on `/` to
      // `/#/` is the same page, not a second page view. What is sent is cut to 2,000 characters,
      // the URL, title and referrer alike: the relay cuts them to Ortto's 255, and a longer one (a
      // SPA's state in the URL, a referrer a browser does not cap at 4 kB) would make the event too
      // large to send at all. They go as `u`, `t` and `r`, which the relay expands.
      const href = loc.href.replace(hash ? "" : /#.*/, "");
      const p = href.replace(/\?[^#]*|#\/?$/g, "");
      if (pageviews && p !== path) {
        track(pageviews, {
          u: href.slice(0, 2e3),
          t: doc.title.slice(0, 2e3),
          r: (last || doc.referrer).slice(0, 2e3),
        });
        last = href;
        path = p;
      }
    });
    // Back from the back/forward cache: a page view (for the person identified now, see track), and
    // this page's queue is its own again, less what another page adopted meanwhile.
    w.addEventListener(
      "pageshow",
      safe((e: PageTransitionEvent) => {
        if (e.persisted) {
          // This page's events are its own again, less those another page adopted meanwhile (their
          // keys are gone; before consent, or with storage full or disabled, none is stored), and
          // what others left is adopted.
          gone = 0;
          q = q.filter((i) => i.m || !allowed() || get(i.k));
          last = path = "";
          scan();
          kick();
          view();
        }
      }),
    );
    // A single-page app's navigations (pushState, replaceState, back/forward, a hash route with
    // data-hash, a navigation.intercept() whose URL commits late): each looked at once, 300 ms after
    // the Navigation API's `currententrychange` (the URL has changed; by then the router has set the
    // title), so nothing runs while the page is idle, nothing for a cancelled or cross-document
    // navigation, and nothing of the page's (history) is wrapped. A browser without the Navigation
    // API (Safari before 26.2, Firefox before 147) looks at the URL every 300 ms, and so does a page
    // whose own script has a global `navigation` (a menu's element or jQuery object replaces the API's).
    if (pageviews) {
      const n = (w as { navigation?: EventTarget & { currentEntry?: unknown } }).navigation;
      n?.currentEntry ? n.addEventListener("currententrychange", () => setTimeout(view, 300)) : setInterval(view, 300);
    }
    // After the loader's queued calls (boot replays them as this returns): a logout page's reset or a
    // login page's identify comes before its page view.
    queueMicrotask(view);
  } catch {}
  return api;
}
