/**
 * Cheap shared counting for the relay's limits (events per contact per day, people per client
 * network per hour): counted in this isolate's memory on the response path, and reported to the
 * sharded `LimitLedger` Durable Objects after the answer, coalesced across requests.
 *
 * A request waits on the ledger only when this isolate's view says a counter is at its limit
 * (to refuse exactly, and the refusal is then cached until the window frees a slot) or when this
 * isolate holds more than UNSYNCED_MAX members of one counter the ledger has not answered for.
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
  /** Refused without asking until then: the ledger said the counter is full until a slot frees. */
  overUntil = 0;
  /** Reported to the ledger once (a counter with fewer than REPORT_AT members never is). */
  reported = false;
  #hashed?: string;

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

/** Drops the least recently used tenth of idle counters (a never-reported one loses its single member: counted in the bound). */
function evict() {
  let n = MAX_COUNTERS / 10;
  for (const [key, c] of counters) {
    if (n <= 0) break;
    if (c.inflight === 0 && (!c.reported || c.unreported === 0)) {
      counters.delete(key);
      n--;
    }
  }
}

function ledger(env: RelayEnv, shard: number): DurableObjectStub<LimitLedger> {
  return env.LIMIT_LEDGER.get(env.LIMIT_LEDGER.idFromName(`shard-${shard}`)) as DurableObjectStub<LimitLedger>;
}

/**
 * Reports the counters' unreported members and asks about `probe` members, one call per shard.
 * What fails to arrive is unreported again, for the next report.
 */
async function sync(env: RelayEnv, items: { counter: Counter; probe: string[] }[]): Promise<LedgerCount[]> {
  const sends = items.map(({ counter: c }) => {
    const add = c.takeUnreported();
    c.inflight += add.length;
    c.reported = true;
    return add;
  });
  const restore = () =>
    items.forEach(({ counter: c }, i) => {
      const add = sends[i] ?? [];
      c.inflight -= add.length;
      c.unreported = Math.min(c.members.length, c.unreported + add.length);
    });
  try {
    const entries = items.map(
      ({ counter: c, probe }, i): LedgerEntry => ({
        key: c.hashed(),
        window: c.window,
        add: (sends[i] ?? []).map(hash),
        probe: probe.map(hash),
      }),
    );
    const byShard = new Map<number, number[]>();
    entries.forEach((e, i) => {
      const shard = Number.parseInt(e.key.slice(0, 4), 16) % SHARDS;
      byShard.set(shard, [...(byShard.get(shard) ?? []), i]);
    });
    const answers: LedgerCount[] = [];
    await Promise.all(
      [...byShard].map(async ([shard, indexes]) => {
        const counts = await ledger(env, shard).sync(indexes.map((i) => entries[i] as LedgerEntry));
        indexes.forEach((i, j) => {
          answers[i] = counts[j] as LedgerCount;
        });
      }),
    );
    items.forEach(({ counter: c }, i) => {
      const answer = answers[i] as LedgerCount;
      c.inflight -= sends[i]?.length ?? 0;
      // Answers may arrive out of order; an older one would undercount.
      if (answer.seq > c.snapSeq) {
        c.snap = answer.count;
        c.snapSeq = answer.seq;
        c.freesAt = answer.freesAt;
      }
    });
    return answers;
  } catch (err) {
    restore();
    throw err;
  }
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
  const items: { counter: Counter; probe: string[] }[] = [];
  for (const c of counters.values()) {
    if (due(c)) items.push({ counter: c, probe: [] });
  }
  if (!items.length) return;
  await sync(env, items).catch((err) => {
    console.log(JSON.stringify({ event: "ledger_unreachable", counters: items.length, error: String(err).slice(0, 200) }));
  });
}

const refusal = (ask: Ask, c: Counter, now: number): Verdict => ({
  ok: false,
  ask,
  retryAfterSeconds: Math.max(1, Math.ceil(((c.freesAt > now ? c.freesAt : now + ask.window) - now) / 1000)),
});

/**
 * Admits a request's members into every counter, or none of them: refused, nothing is counted.
 * Members a counter already holds (a re-send) pass without being counted again.
 */
export async function admit(env: RelayEnv, asks: Ask[], now = Date.now()): Promise<Verdict> {
  // The common case first: a request whose every counter is new to this isolate, or seen once
  // with the same single member (a re-send), is decided without a Counter or a wait.
  let simple = true;
  for (const ask of asks) {
    if (ask.members.length !== 1 || counters.has(ask.key) || ask.limit < 1) {
      simple = false;
      break;
    }
    const first = firstOf(ask.key, ask.window, now);
    if (first && first.member !== ask.members[0]) {
      simple = false;
      break;
    }
  }
  if (simple) {
    for (const ask of asks) if (!firsts.has(ask.key)) remember(ask.key, ask.members[0] as string, now);
    return { ok: true, report: false };
  }

  const cs = asks.map((a) => counter(a.key, a.window, now));
  let fresh = asks.map((ask, i) => (cs[i] as Counter).fresh(ask.members));
  const slow: number[] = [];
  for (const [i, ask] of asks.entries()) {
    const c = cs[i] as Counter;
    const n = fresh[i]?.length ?? 0;
    if (!n) continue;
    if (c.overUntil > now) return refusal(ask, c, now);
    if (c.view() + n > ask.limit || c.unreported + c.inflight + n > UNSYNCED_MAX) slow.push(i);
  }
  const known = new Map<number, number>();
  if (slow.length) {
    try {
      const answers = await sync(
        env,
        slow.map((i) => ({ counter: cs[i] as Counter, probe: fresh[i] ?? [] })),
      );
      for (const [j, i] of slow.entries()) known.set(i, answers[j]?.known ?? 0);
    } catch (err) {
      // The ledger unreachable: decide on what this isolate knows.
      console.log(JSON.stringify({ event: "ledger_unreachable", counters: slow.length, error: String(err).slice(0, 200) }));
    }
  }
  // Decided on the state as it is now: while this request waited, others of this isolate may have been admitted.
  if (slow.length) fresh = asks.map((ask, i) => (cs[i] as Counter).fresh(ask.members));
  for (const [i, ask] of asks.entries()) {
    const c = cs[i] as Counter;
    const adds = Math.max(0, (fresh[i]?.length ?? 0) - (known.get(i) ?? 0));
    if (adds && c.view() + adds > ask.limit) {
      if (known.has(i) && c.snap >= ask.limit) c.overUntil = c.freesAt;
      return refusal(ask, c, now);
    }
  }
  let report = false;
  for (const [i, c] of cs.entries()) {
    c.add(fresh[i] ?? [], now);
    report ||= due(c);
  }
  return { ok: true, report };
}

/** Forgets every counter of this isolate (tests: a request reaching a new isolate, which knows only the ledger). */
export function forgetCounters() {
  counters.clear();
  firsts.clear();
}
