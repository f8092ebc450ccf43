/**
 * Cheap shared counting for the relay's limits (events per contact per day, people per client
 * network per hour): counted in this isolate's memory on the response path, and reported to the
 * sharded `LimitLedger` Durable Objects after the answer, coalesced across requests.
 *
 * A request waits on the ledger only when this isolate's view says a counter is at its limit (to
 * decide exactly: the ledger counts the request's members as probes, so a person or an event it
 * already counts through another isolate passes) or when this isolate would hold more than
 * UNSYNCED_MAX members of one counter the ledger has not answered for; never longer than
 * LEDGER_TIMEOUT_MS (then the isolate decides on what it knows).
 * A counter is reported only once it holds REPORT_AT unreported members (or has been reported
 * before): a visitor with a few events, a server batch's people, cost no Durable Object request
 * and no row.
 *
 * The bound (ARCHITECTURE.md): one isolate alone counts exactly. Each further isolate that
 * admits for the same counter can overshoot it by at most UNSYNCED_MAX members before it
 * learns the ledger's count, so a flood reaching I isolates at once gets at most
 * limit + UNSYNCED_MAX × (I − 1) through; Ortto enforces its own 50 a day exactly behind us.
 */
import type { RelayEnv } from "../env.ts";
import { sha256Hex } from "../hash.ts";
import type { LedgerCount, LedgerEntry, LimitLedger } from "./ledger-object.ts";

/** What one request asks of one counter. */
export interface Ask {
  /** The counter, as this isolate knows it (hashed before it leaves the isolate). */
  key: string;
  limit: number;
  /** How long a member counts, in ms. */
  window: number;
  /** The members this request brings (event ids, identifiers); those already counted are free. */
  members: string[];
}

/** Admitted (with `report` when some counter now has members to report to the ledger), or refused. */
export type Verdict = { ok: true; report: boolean } | { ok: false; ask: Ask; retryAfterSeconds: number };

/** Shard objects: a request's counters reach at most this many objects. */
export const SHARDS = 16;
/** Members of one counter this isolate may admit before the ledger has answered for them. */
export const UNSYNCED_MAX = 10;
/**
 * A counter is reported once it holds this many unreported members (so a contact with a few events
 * in an isolate, the common case, costs the ledger nothing), and before it reaches UNSYNCED_MAX.
 */
export const REPORT_AT = 5;
/** Counters kept in an isolate's memory; the least recently used idle ones go first. */
const MAX_COUNTERS = 20_000;
/** Reports wait this long, so that concurrent requests share one call per shard. */
const FLUSH_DELAY_MS = 20;

const hash = (value: string) => sha256Hex(value);

/** A counter as this isolate knows it. Plain arrays, not maps: an isolate holds thousands, most with one member. */
class Counter {
  /** Members this isolate admitted, oldest first, and when (for dedup, and expiry of what was never reported). */
  members: string[] = [];
  times: number[] = [];
  /** How many of the newest members have not been sent to the ledger yet. */
  unreported = 0;
  /** Members sent to the ledger and not yet answered for. */
  inflight = 0;
  /** The ledger's count as of its last answer (it includes what this isolate reported). */
  snap = 0;
  /** The ledger's order of that answer: an older answer arriving late is not applied. */
  snapSeq = 0;
  freesAt = 0;
  /** Reported to the ledger once (a counter with fewer than REPORT_AT members never is). */
  reported = false;
  #hashed?: Promise<string>;

  constructor(
    readonly key: string,
    readonly window: number,
  ) {}

  hashed() {
    this.#hashed ??= hash(this.key);
    return this.#hashed;
  }

  /** Forgets members whose time ran out (an unreported one is then never reported: it no longer counts). */
  prune(now: number) {
    const oldest = now - this.window;
    let n = 0;
    while (n < this.times.length && (this.times[n] as number) <= oldest) n++;
    if (!n) return;
    this.members.splice(0, n);
    this.times.splice(0, n);
    this.unreported = Math.min(this.unreported, this.members.length);
  }

  fresh(members: string[]): string[] {
    if (members.length === 1) return this.members.includes(members[0] as string) ? [] : members;
    return [...new Set(members)].filter((m) => !this.members.includes(m));
  }

  add(members: string[], now: number) {
    for (const m of members) {
      this.members.push(m);
      this.times.push(now);
    }
    this.unreported += members.length;
  }

  /** Records a member the ledger already counts: known here, and not to be reported again. */
  remember(member: string, now: number) {
    // Kept in time order: it goes before the unreported ones, which stay the newest.
    const at = this.members.length - this.unreported;
    this.members.splice(at, 0, member);
    this.times.splice(at, 0, now);
  }

  /** Takes the unreported members, to send. */
  takeUnreported(): string[] {
    const taken = this.unreported ? this.members.slice(-this.unreported) : [];
    this.unreported = 0;
    return taken;
  }

  /** What this isolate believes the counter holds. */
  view() {
    return this.snap + this.unreported + this.inflight;
  }
}

const counters = new Map<string, Counter>();

/**
 * Counters this isolate has seen with a single member, which is most of them (a server batch's
 * people, a visitor's first event): the key's member and when, as one string rather than an
 * object, so tens of thousands cost little memory and no garbage collection to speak of. A
 * second member makes it a Counter.
 */
const firsts = new Map<string, string>();
const MAX_FIRSTS = 50_000;

function firstOf(key: string, window: number, now: number): { member: string; at: number } | undefined {
  const value = firsts.get(key);
  if (value === undefined) return undefined;
  const bar = value.indexOf("|");
  const at = Number(value.slice(0, bar));
  if (at > now - window) return { member: value.slice(bar + 1), at };
  firsts.delete(key);
  return undefined;
}

function remember(key: string, member: string, now: number) {
  if (firsts.size >= MAX_FIRSTS) {
    // The oldest tenth goes: each loses one member's count (within the bound: it was never reported).
    let n = MAX_FIRSTS / 10;
    for (const old of firsts.keys()) {
      if (n-- <= 0) break;
      firsts.delete(old);
    }
  }
  firsts.set(key, `${now}|${member}`);
}

/** The counter of `key`, made (from its first sighting, if any) when this isolate has none yet. */
function counter(key: string, window: number, now: number): Counter {
  let c = counters.get(key);
  if (c) {
    counters.delete(key); // most recently used last
  } else {
    c = new Counter(key, window);
    const first = firstOf(key, window, now);
    if (first) {
      firsts.delete(key);
      c.members.push(first.member);
      c.times.push(first.at);
      c.unreported = 1;
    }
    if (counters.size >= MAX_COUNTERS) evict();
  }
  counters.set(key, c);
  c.prune(now);
  return c;
}

/**
 * Drops the least recently used tenth of the counters, whatever they hold: memory stays bounded
 * whatever an attacker sends. Members not yet reported are then counted again if they come back
 * (within the bound: at most REPORT_AT − 1 per counter). Only counters with a report in flight stay.
 */
function evict() {
  let n = MAX_COUNTERS / 10;
  for (const [key, c] of counters) {
    if (n <= 0) break;
    if (c.inflight === 0) {
      counters.delete(key);
      n--;
    }
  }
}

function ledger(env: RelayEnv, shard: number): DurableObjectStub<LimitLedger> {
  return env.LIMIT_LEDGER.get(env.LIMIT_LEDGER.idFromName(`shard-${shard}`)) as DurableObjectStub<LimitLedger>;
}

/** How long a request waits for the ledger before deciding on what its isolate knows. */
export const LEDGER_TIMEOUT_MS = 300;

type Item = { counter: Counter; probe: string[] };

/**
 * Reports the counters' unreported members (with when each was admitted) and asks about `probe`
 * members, one call per shard. The counters' accounting follows the calls themselves: an answer
 * that comes after the caller stopped waiting (LEDGER_TIMEOUT_MS) still updates them, and what
 * fails to arrive is unreported again, for the next report.
 */
function sync(env: RelayEnv, items: Item[]): Promise<LedgerCount[]> {
  const sends = items.map(({ counter: c }) => {
    const n = c.unreported;
    const times = c.times.slice(c.times.length - n);
    const add = c.takeUnreported().map((member, i): [string, number] => [member, times[i] as number]);
    c.inflight += add.length;
    c.reported = true;
    return add;
  });
  const answers: LedgerCount[] = [];
  const hashed = Promise.all(
    items.map(
      async ({ counter: c, probe }, i): Promise<LedgerEntry> => ({
        key: await c.hashed(),
        window: c.window,
        add: await Promise.all((sends[i] ?? []).map(async ([member, at]): Promise<[string, number]> => [await hash(member), at])),
        probe: await Promise.all(probe.map(hash)),
      }),
    ),
  );
  const call = async (shard: number, indexes: number[], entries: LedgerEntry[]) => {
    try {
      const counts = await ledger(env, shard).sync(indexes.map((i) => entries[i] as LedgerEntry));
      const at = Date.now();
      for (const [j, i] of indexes.entries()) {
        const answer = counts[j] as LedgerCount;
        const { counter: c, probe } = items[i] as Item;
        answers[i] = answer;
        c.inflight -= sends[i]?.length ?? 0;
        // Answers may arrive out of order; an older one would undercount.
        if (answer.seq > c.snapSeq) {
          c.snap = answer.count;
          c.snapSeq = answer.seq;
          c.freesAt = answer.freesAt;
        }
        // Probed members the ledger already counts (through another isolate) are known here from now on.
        probe.forEach((member, k) => {
          if (answer.known[k] && !c.members.includes(member)) c.remember(member, at);
        });
      }
    } catch (err) {
      for (const i of indexes) {
        const c = (items[i] as Item).counter;
        const n = sends[i]?.length ?? 0;
        c.inflight -= n;
        c.unreported = Math.min(c.members.length, c.unreported + n);
      }
      throw err;
    }
  };
  const calls = hashed.then((entries) => {
    const byShard = new Map<number, number[]>();
    entries.forEach((e, i) => {
      const shard = Number.parseInt(e.key.slice(0, 4), 16) % SHARDS;
      byShard.set(shard, [...(byShard.get(shard) ?? []), i]);
    });
    return [...byShard].map(([shard, indexes]) => call(shard, indexes, entries));
  });
  const all = calls.then((each) => Promise.all(each)).then(() => answers);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the ledger did not answer within ${LEDGER_TIMEOUT_MS} ms`)), LEDGER_TIMEOUT_MS);
  });
  return Promise.race([all, timeout]).finally(() => clearTimeout(timer));
}

/** Whether a counter has members to report: once it was reported, every new one; before, only REPORT_AT of them. */
const due = (c: Counter) => c.unreported > 0 && (c.reported || c.unreported >= REPORT_AT);

let flushing: Promise<void> | undefined;

/** Reports the unreported members of counters due a report, shortly, once for every request that asks meanwhile. */
export function flushSoon(env: RelayEnv): Promise<void> {
  flushing ??= new Promise((resolve) => setTimeout(resolve, FLUSH_DELAY_MS)).then(() => {
    flushing = undefined;
    return flush(env);
  });
  return flushing;
}

async function flush(env: RelayEnv): Promise<void> {
  const items: Item[] = [];
  for (const c of counters.values()) if (due(c)) items.push({ counter: c, probe: [] });
  if (!items.length) return;
  await sync(env, items).catch((err) => {
    console.log(JSON.stringify({ event: "ledger_unreachable", counters: items.length, error: String(err).slice(0, 200) }));
  });
}

const refusal = (ask: Ask, now: number): Verdict => {
  const c = counters.get(ask.key);
  const until = c && c.freesAt > now ? c.freesAt : now + ask.window;
  return { ok: false, ask, retryAfterSeconds: Math.max(1, Math.ceil((until - now) / 1000)) };
};

/** What one ask would add to its counter, as this isolate knows it, without making a counter. */
function look(ask: Ask, now: number): { c?: Counter; fresh: string[]; view: number; unsynced: number } {
  const c = counters.get(ask.key);
  if (c) {
    c.prune(now);
    return { c, fresh: c.fresh(ask.members), view: c.view(), unsynced: c.unreported + c.inflight };
  }
  const unique = ask.members.length === 1 ? ask.members : [...new Set(ask.members)];
  const first = firstOf(ask.key, ask.window, now);
  if (!first) return { fresh: unique, view: 0, unsynced: 0 };
  return { fresh: unique.filter((m) => m !== first.member), view: 1, unsynced: 1 };
}

/** Commits a decided request: its fresh members into their counters (a lone first member as a first sighting). */
function commit(asks: Ask[], now: number): { ok: true; report: boolean } {
  let report = false;
  for (const ask of asks) {
    const { c, fresh } = look(ask, now);
    if (!fresh.length) continue;
    if (!c && fresh.length === 1 && !firsts.has(ask.key)) {
      remember(ask.key, fresh[0] as string, now);
      continue;
    }
    const counted = c ?? counter(ask.key, ask.window, now);
    counted.add(fresh, now);
    report ||= due(counted);
  }
  return { ok: true, report };
}

/** Rounds of waiting for the ledger in one request, at most (other requests may move the counts meanwhile). */
const MAX_ROUNDS = 3;

/**
 * Admits a request's members into every counter, or none of them: refused, nothing is counted
 * (and no counter is made), so there is nothing to give back. Members a counter already holds
 * (a re-send) pass without being counted again.
 */
export async function admit(env: RelayEnv, asks: Ask[], now = Date.now()): Promise<Verdict> {
  /** Counters the ledger has answered for in this request (the members it already counts are then known here). */
  const answered = new Set<string>();
  const adds = (_ask: Ask, fresh: string[]) => fresh.length;
  for (let round = 0; ; round++) {
    const slow: number[] = [];
    for (const [i, ask] of asks.entries()) {
      const { fresh, view, unsynced } = look(ask, now);
      const n = adds(ask, fresh);
      // Over the limit as this isolate sees it: the ledger decides, exactly, with the members as probes.
      // Or more than this isolate may hold unanswered for: the ledger hears it first (the bound) —
      // unless it has just answered for this counter and nothing else is unanswered (one request's
      // own members may be more than UNSYNCED_MAX).
      const fresher = answered.has(ask.key) && unsynced === 0;
      if (n && (view + n > ask.limit || (unsynced + n > UNSYNCED_MAX && !fresher))) slow.push(i);
    }
    // Decided without a pause since the look: commit.
    if (!slow.length) return commit(asks, now);
    const over = slow.find((i) => {
      const ask = asks[i] as Ask;
      const { fresh, view } = look(ask, now);
      return view + adds(ask, fresh) > ask.limit;
    });
    // The ledger has answered for this counter and it is still over: refused.
    if (over !== undefined && answered.has((asks[over] as Ask).key)) return refusal(asks[over] as Ask, now);
    // Still moving under this request's feet after a few rounds (many concurrent requests of one
    // counter): it goes if every such counter has had the ledger's answer in this request and none is
    // over; otherwise it is refused, to be sent again in a moment.
    if (round === MAX_ROUNDS) {
      if (over !== undefined) return refusal(asks[over] as Ask, now);
      if (slow.every((i) => answered.has((asks[i] as Ask).key))) return commit(asks, now);
      return { ok: false, ask: asks[slow[0] as number] as Ask, retryAfterSeconds: 1 };
    }
    const items = slow.map((i) => {
      const ask = asks[i] as Ask;
      return { counter: counter(ask.key, ask.window, now), probe: look(ask, now).fresh };
    });
    try {
      await sync(env, items);
      for (const i of slow) answered.add((asks[i] as Ask).key);
    } catch (err) {
      // The ledger unreachable or slow: decide on what this isolate knows, and no more than it may hold
      // unanswered for (UNSYNCED_MAX), so an outage does not multiply the budgets by the isolates.
      console.log(JSON.stringify({ event: "ledger_unreachable", counters: slow.length, error: String(err).slice(0, 200) }));
      const full = asks.find((ask) => {
        const { fresh, view } = look(ask, now);
        return view + adds(ask, fresh) > Math.min(ask.limit, UNSYNCED_MAX);
      });
      return full ? refusal(full, now) : commit(asks, now);
    }
  }
}

/** Forgets every counter of this isolate (tests: a request reaching a new isolate, which knows only the ledger). */
export function forgetCounters() {
  counters.clear();
  firsts.clear();
}
