/**
 * Cheap shared counting for the relay's limits (events per contact per day, people per client
 * network per hour): counted in this isolate's memory on the response path, and reported to the
 * sharded `LimitLedger` Durable Objects after the answer, coalesced across requests.
 *
 * A request waits on the ledger only when this isolate's view says a counter is at its limit (to
 * decide exactly: the ledger counts the request's members as probes, so a person or an event it
 * already counts through another isolate passes) or when this isolate would hold more than
 * UNSYNCED_MAX members of one counter it has not reported; requests waiting on one counter share
 * one call, and none waits longer than LEDGER_TIMEOUT_MS (then it decides on what the isolate
 * knows, and a refusal says to come back in a moment). A counter is reported only once it holds
 * REPORT_AT unreported members, in groups of that many: a visitor with a few events, a
 * server batch's people, cost no Durable Object request and no row.
 *
 * The bound (ARCHITECTURE.md): one isolate alone counts exactly. Each further isolate that
 * admits for the same counter can overshoot it by about UNSYNCED_MAX members before it learns
 * the ledger's count, so a flood reaching I isolates at once gets about
 * limit + UNSYNCED_MAX × (I − 1) through; Ortto enforces its own 50 a day exactly behind us.
 */
import type { RelayEnv } from "../env.ts";
import { digestHex } from "../hash.ts";
import type { Clock } from "../isolate.ts";
import type { LedgerCount, LedgerEntry } from "./ledger-object.ts";

/** The shared ledger as this isolate reaches it: one call per shard (the `LimitLedger` objects; a fake in Node tests). */
export interface LedgerPort {
  sync(shard: number, entries: LedgerEntry[]): Promise<LedgerCount[]>;
  /** How long a round waits for it, in ms (LEDGER_TIMEOUT_MS when unset). */
  timeoutMs?: number;
}

/**
 * The account's `LimitLedger` shards, reached through the binding of the request at hand, waited
 * for `timeoutMs` a round (the LEDGER_TIMEOUT_MS var).
 */
export function ledgerOf(env: RelayEnv, timeoutMs = LEDGER_TIMEOUT_MS): LedgerPort {
  return {
    sync: (shard, entries) => env.LIMIT_LEDGER.get(env.LIMIT_LEDGER.idFromName(`shard-${shard}`)).sync(entries),
    timeoutMs,
  };
}

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

/**
 * Admitted (with `report` when some counter now has members to report to the ledger), or refused:
 * for good until a slot frees (`temporary` unset: the ledger confirmed the counter is full; `full`:
 * every counter of the request it confirmed full, each with the request's new members it has no
 * room for), or for a moment (the ledger did not answer in time, or the counter is too busy to
 * decide now).
 */
export type Verdict = { ok: true; report: boolean } | { ok: false; ask: Ask; retryAfterSeconds: number; temporary?: true; full?: Full[] };

/** A counter the ledger confirmed full: the request's new members it has no room for, and when it frees a slot. */
export interface Full {
  ask: Ask;
  over: string[];
  retryAfterSeconds: number;
}

/** Shard objects: a request's counters reach at most this many objects. */
export const SHARDS = 16;
/** Members of one counter this isolate may admit before it has reported them to the ledger. */
export const UNSYNCED_MAX = 10;
/**
 * A counter is reported once it holds this many unreported members (so a contact with a few events
 * in an isolate, the common case, costs the ledger nothing), and before it reaches UNSYNCED_MAX.
 * Each report rewrites the counter's row, so the larger the fewer rows written; the UNSYNCED_MAX −
 * REPORT_AT members left are the room a counter has while its report waits (FLUSH_DELAY_MS) and
 * travels: one that outruns it waits for the ledger (with 8, a known batch every 20 requests did).
 */
export const REPORT_AT = 7;
/**
 * A member as the ledger knows it: the first MEMBER_CHARS hex digits of its SHA-256 (64 bits),
 * which keep a ledger row two thirds of its size with 32. A member only needs telling apart
 * from the other members of its counter (at most the limit and the isolates' overshoot), not
 * hiding: 64 bits keep a chance clash out of reach, and a sender who crafts a clashing pair (some
 * 2^32 hashes of event ids or emails) has one member of a counter counted once for two. At best
 * that doubles a counter once the ledger has counted it (three of a kind cost 2^43, four 2^48),
 * which is less than a network's budget yields to a sender with many addresses, and a contact's
 * events past 50 a day are refused by Ortto's own count behind the relay. Counters' keys stay 32
 * digits: a clash there would merge two people's counters. Rows written with 32-digit members
 * are read by their first MEMBER_CHARS (limits/ledger-object.ts), so a deployed ledger counts on.
 */
export const MEMBER_CHARS = 16;

/** How long a request waits for the ledger, per round, before deciding on what its isolate knows, unless the LEDGER_TIMEOUT_MS var says otherwise. */
export const LEDGER_TIMEOUT_MS = 500;
/** What a temporary refusal asks the client to wait, in seconds. */
export const BUSY_RETRY_SECONDS = 2;
/** Counters kept in an isolate's memory; the least recently used go first. */
const MAX_COUNTERS = 20_000;
/**
 * Reports wait this long, so that concurrent requests share one call per shard: at most one call
 * per shard per FLUSH_DELAY_MS from an isolate. No bound depends on it: what an isolate may hold
 * unanswered is UNSYNCED_MAX members of a counter, or one request's own if more (admitted once the
 * ledger has answered for the counter), however long its report waits (past that a request waits
 * for the ledger), and what an isolate that disappears takes with it is within that.
 */
export const FLUSH_DELAY_MS = 100;
/**
 * Rounds of waiting for the ledger in one request, at most (other requests move the counts meanwhile):
 * a burst of new members of one counter goes UNSYNCED_MAX a round, each round one shared call.
 */
const MAX_ROUNDS = 10;

/** A counter's members are looked up in a set from this many on (a returning contact's day of events), in its array below. */
const INDEX_FROM = 8;

/** Counters kept with a single member (`firsts`); past it the oldest tenth go. */
const MAX_FIRSTS = 50_000;

/** A counter as this isolate knows it. Plain arrays: an isolate holds thousands, most with a few members. */
class Counter {
  /** Members this isolate admitted, oldest first, and when (for dedup, and expiry of what was never reported). */
  members: string[] = [];
  times: number[] = [];
  /** How many of the newest members have not been sent to the ledger yet. */
  unreported = 0;
  /**
   * Members sent in a call that failed or timed out, with when each was admitted: sent again with
   * the next report. Not a count of the newest members: a later call may have been delivered meanwhile.
   */
  retry?: [string, number][];
  /** Members sent to the ledger and not yet answered for. */
  inflight = 0;
  /** Members the ledger counts through other isolates (learned from probes), with when they leave its window. */
  known?: Map<string, number>;
  /** The ledger's count as of its last answer (it includes what this isolate reported). */
  snap = 0;
  /** The ledger's order of that answer: an older answer arriving late is not applied. */
  snapSeq = 0;
  freesAt = 0;
  /** Reported to the ledger once (a counter with fewer than REPORT_AT members never is). */
  reported = false;
  /** The ledger call this counter is waiting for, shared by every request that needs it. */
  waiting?: Promise<unknown>;
  /** The key as the ledger knows it (its hash), once it has been sent there. */
  #ledgerKey?: string;

  constructor(
    readonly key: string,
    readonly window: number,
  ) {}

  /** Forgets members whose time ran out (an unreported one is then never reported: it no longer counts). */
  prune(now: number) {
    const oldest = now - this.window;
    let n = 0;
    while (n < this.times.length && (this.times[n] as number) <= oldest) n++;
    if (n) {
      this.#index = undefined;
      this.members.splice(0, n);
      this.times.splice(0, n);
      this.unreported = Math.min(this.unreported, this.members.length);
    }
    if (this.retry) {
      this.retry = this.retry.filter(([, at]) => at > oldest);
      if (!this.retry.length) this.retry = undefined;
    }
    if (this.known) for (const [member, expires] of this.known) if (expires <= now) this.known.delete(member);
  }

  /** The members as a set, once there are enough that a scan of the array costs more (see `counted`). */
  #index?: Set<string>;

  private counted(m: string) {
    if (this.members.length < INDEX_FROM) return this.members.includes(m) || this.known?.has(m) === true;
    this.#index ??= new Set(this.members);
    return this.#index.has(m) || this.known?.has(m) === true;
  }

  fresh(members: string[]): string[] {
    if (members.length === 1) return this.counted(members[0] as string) ? [] : members;
    return [...new Set(members)].filter((m) => !this.counted(m));
  }

  add(members: string[], now: number) {
    for (const m of members) {
      this.members.push(m);
      this.times.push(now);
      this.#index?.add(m);
    }
    this.unreported += members.length;
  }

  /** Members to send to the ledger: those of failed calls and the unreported (the newest). */
  pending() {
    return this.unreported + (this.retry?.length ?? 0);
  }

  /** Takes the pending members, with when each was admitted, to send. */
  takePending(): [string, number][] {
    const n = this.unreported;
    this.unreported = 0;
    const from = this.members.length - n;
    const newest = this.members.slice(from).map((m, i): [string, number] => [m, this.times[from + i] as number]);
    const again = this.retry ?? [];
    this.retry = undefined;
    return again.length ? [...again, ...newest] : newest;
  }

  /** A call that was not delivered: its members are sent again with the next report. */
  failed(sent: [string, number][]) {
    if (sent.length) this.retry = this.retry ? [...this.retry, ...sent] : sent;
  }

  /** A call that timed out reached the ledger after all (its answer is applied): its members still to send again need not be. */
  landed(sent: [string, number][]) {
    if (!this.retry) return;
    // A member with when it was admitted: one that left the window and came back is another.
    const done = new Map(sent);
    this.retry = this.retry.filter(([m, at]) => done.get(m) !== at);
    if (!this.retry.length) this.retry = undefined;
  }

  /** The key as the ledger knows it: its hash, computed once. */
  ledgerKey(): string {
    this.#ledgerKey ??= digestHex(this.key);
    return this.#ledgerKey;
  }

  /** What this isolate believes the counter holds. */
  view() {
    return this.snap + this.pending() + this.inflight;
  }
}

type Item = { counter: Counter; probe: string[] };

/**
 * Whether a counter has members to report: REPORT_AT of them, in one go. Reporting each new member
 * once a counter had been reported would cost a ledger call for most events of a returning
 * visitor; the bound needs no more, since `admit` makes a request wait before an isolate holds
 * more than UNSYNCED_MAX unanswered members of a counter.
 */
const due = (c: Counter) => c.pending() >= REPORT_AT;

/** What one ask would add to its counter, as this isolate knows it, without making a counter. */
interface Look {
  c?: Counter;
  fresh: string[];
  view: number;
  /** Members this isolate holds that the ledger has not answered for (unreported or in flight). */
  unsynced: number;
  /** The ledger once counted this counter, and this isolate has forgotten what it said. */
  forgotten: boolean;
}

const busy = (ask: Ask): Verdict => ({ ok: false, ask, retryAfterSeconds: BUSY_RETRY_SECONDS, temporary: true });

const unreachable = (counters: number, err: unknown) =>
  console.log(JSON.stringify({ event: "ledger_unreachable", counters, error: String(err).slice(0, 200) }));

/**
 * One isolate's counts: made once per isolate (worker/isolate.ts), reaching the ledger through
 * the `LedgerPort` each call is given. A new instance is a new isolate, which knows only the ledger.
 */
export class LimitCounts {
  private readonly counters = new Map<string, Counter>();
  /** Keys of counters dropped from memory after the ledger had counted them: made again, they ask it first. */
  private readonly forgotten = new Set<string>();
  /**
   * Counters dropped from memory with members the ledger has not heard of (fewer than REPORT_AT):
   * sent with the next flush, and taken back if their key comes first, so that dropping a counter
   * never loses a count. At most MAX_COUNTERS (while the ledger is unreachable); past that the
   * oldest go, each losing at most REPORT_AT − 1 members' count.
   */
  private readonly orphans = new Map<string, Counter>();
  /**
   * Counters this isolate has seen with a single member, which is most of them (a server batch's
   * people, a visitor's first event): the key's member and when, as one string rather than an
   * object, so tens of thousands cost little memory and no garbage collection to speak of. A
   * second member makes it a Counter.
   */
  private readonly firsts = new Map<string, string>();
  private flushing?: Promise<void>;

  constructor(readonly now: Clock = () => Date.now()) {}

  /**
   * Admits a request's members into every counter, or none of them: refused, nothing is counted
   * (and no counter is kept for it), so there is nothing to give back. Members a counter already
   * holds (a re-send) pass without being counted again. Each round decides on this isolate's view,
   * or asks the ledger about the counters it cannot decide alone and looks again.
   */
  async admit(ledger: LedgerPort, asks: Ask[]): Promise<Verdict> {
    const now = this.now();
    // A batch of people this isolate has never seen (a server's, the queue's): every counter asked for
    // one member, and none known here in any form. Each is then a first sighting, admitted as the rounds
    // below would admit it (a view of 0 is under any limit of 1 or more, and 1 is within UNSYNCED_MAX),
    // without their looks.
    if (asks.every((ask) => this.unseen(ask))) {
      for (const ask of asks) this.rememberFirst(ask.key, ask.members[0] as string, now);
      return { ok: true, report: this.orphans.size > 0 };
    }
    /** Counters the ledger has answered for in this request (the members it already counts are then known here). */
    const answered = new Set<string>();
    /** Counters made for this request's waits: dropped again if they end up holding nothing. */
    const made: Counter[] = [];
    for (let round = 0; ; round++) {
      const looks = asks.map((ask) => this.look(ask, now));
      const { over, slow } = this.undecided(asks, looks, answered);
      // Decided without a pause since the look: commit.
      if (!over.length && !slow.length) return this.commit(asks, now, looks);
      // The ledger has answered for these counters in this request and they are still over: refused,
      // naming every one of them (a request that keeps what each has room for then asks once more, not once a counter).
      const confirmed = over.filter((i) => answered.has((asks[i] as Ask).key) && !(looks[i] as Look).forgotten);
      if (confirmed.length) return this.drop(made, this.refusal(asks, looks, confirmed, now));
      if (round === MAX_ROUNDS) return this.drop(made, busy(asks[over[0] ?? (slow[0] as number)] as Ask));
      try {
        await this.askLedger(ledger, asks, looks, over, slow, made, now);
      } catch (err) {
        // The ledger unreachable or slow: decide on what this isolate knows. Refused, a request is told to
        // come back in a moment, never a day: the limit was not confirmed.
        unreachable(over.length + slow.length, err);
        const blocked = asks.find((ask) => {
          const { fresh, view, unsynced } = this.look(ask, now);
          return fresh.length && (view + fresh.length > ask.limit || unsynced + fresh.length > UNSYNCED_MAX);
        });
        return blocked ? this.drop(made, busy(blocked)) : this.commit(asks, now);
      }
      for (const i of [...over, ...slow]) {
        answered.add((asks[i] as Ask).key);
        this.forgotten.delete((asks[i] as Ask).key);
      }
    }
  }

  /** Reports the unreported members of counters due a report, shortly, once for every request that asks meanwhile. */
  flushSoon(ledger: LedgerPort): Promise<void> {
    this.flushing ??= new Promise((resolve) => setTimeout(resolve, FLUSH_DELAY_MS)).then(() => {
      this.flushing = undefined;
      return this.flush(ledger);
    });
    return this.flushing;
  }

  /**
   * The asks this isolate cannot decide alone: `over`, at the limit as it sees it (or forgotten),
   * for the ledger to decide with the members as probes; `slow`, more than it may hold unanswered
   * for (the bound), unless the ledger has just answered for the counter and it holds nothing else
   * (one request's own members may be more).
   */
  private undecided(asks: Ask[], looks: Look[], answered: Set<string>) {
    const over: number[] = [];
    const slow: number[] = [];
    for (const [i, ask] of asks.entries()) {
      const { fresh, view, unsynced, forgotten } = looks[i] as Look;
      const n = fresh.length;
      if (!n) continue;
      if (view + n > ask.limit || (forgotten && !answered.has(ask.key))) over.push(i);
      else if (unsynced + n > UNSYNCED_MAX && !(answered.has(ask.key) && unsynced === 0)) slow.push(i);
    }
    return { over, slow };
  }

  /** One round's wait: over counters need this request's probes, a call of their own; slow ones share a call in flight. */
  private async askLedger(ledger: LedgerPort, asks: Ask[], looks: Look[], over: number[], slow: number[], made: Counter[], now: number) {
    const items: Item[] = [];
    const joins: Promise<unknown>[] = [];
    for (const i of [...over, ...slow]) {
      const ask = asks[i] as Ask;
      const existed = this.counters.has(ask.key);
      const c = this.counter(ask.key, ask.window, now);
      if (!existed) made.push(c);
      if (!over.includes(i) && c.waiting) joins.push(c.waiting);
      else items.push({ counter: c, probe: (looks[i] as Look).fresh });
    }
    let call: Promise<unknown> | undefined;
    if (items.length) {
      call = this.sync(ledger, items);
      const shared = call.catch(() => undefined);
      for (const { counter: c } of items) c.waiting = shared;
      void shared.then(() => {
        for (const { counter: c } of items) if (c.waiting === shared) c.waiting = undefined;
      });
    }
    await Promise.all([call, ...joins]);
  }

  /** Counters made for a refused request's waits are dropped (one that learnt the ledger's count is kept: it carries the refusal). */
  private drop(made: Counter[], verdict: Verdict): Verdict {
    for (const c of made)
      if (!c.members.length && !c.snap && !c.inflight && !c.waiting && this.counters.get(c.key) === c) this.counters.delete(c.key);
    return verdict;
  }

  /** Refused by the counters at `confirmed` (full, as the ledger has just said), the first of them named. */
  private refusal(asks: Ask[], looks: Look[], confirmed: number[], now: number): Verdict {
    // Each counter's new members past the room it has left (members it already holds pass, as a re-send does).
    const full = confirmed.map((i): Full => {
      const ask = asks[i] as Ask;
      const c = this.counters.get(ask.key);
      const until = c && c.freesAt > now ? c.freesAt : now + ask.window;
      const room = Math.max(0, ask.limit - (c?.view() ?? ask.limit));
      return { ask, over: (looks[i] as Look).fresh.slice(room), retryAfterSeconds: Math.max(1, Math.ceil((until - now) / 1000)) };
    });
    const [first] = full as [Full];
    return { ok: false, ask: first.ask, retryAfterSeconds: first.retryAfterSeconds, full };
  }

  /** One member of a counter this isolate has no trace of: no counter, no dropped one, no first sighting, not forgotten. */
  private unseen(ask: Ask): boolean {
    const { key } = ask;
    return (
      ask.members.length === 1 &&
      ask.limit >= 1 &&
      !this.counters.has(key) &&
      !this.firsts.has(key) &&
      !(this.orphans.size && this.orphans.has(key)) &&
      !(this.forgotten.size && this.forgotten.has(key))
    );
  }

  private firstOf(key: string, window: number, now: number): { member: string; at: number } | undefined {
    const value = this.firsts.get(key);
    if (value === undefined) return undefined;
    const bar = value.indexOf("|");
    const at = Number(value.slice(0, bar));
    if (at > now - window) return { member: value.slice(bar + 1), at };
    this.firsts.delete(key);
    return undefined;
  }

  private rememberFirst(key: string, member: string, now: number) {
    if (this.firsts.size >= MAX_FIRSTS) {
      // The oldest tenth goes: each loses one member's count (within the bound: it was never reported).
      let n = MAX_FIRSTS / 10;
      for (const old of this.firsts.keys()) {
        if (n-- <= 0) break;
        this.firsts.delete(old);
      }
    }
    if (now !== this.stampAt) {
      this.stampAt = now;
      this.stamp = `${now}|`;
    }
    this.firsts.set(key, this.stamp + member);
  }

  /** `${now}|` of the last first sighting, made once for a request's many (a number's string is not free). */
  private stampAt = Number.NaN;
  private stamp = "";

  /** The counter of `key`, made (from its first sighting, if any) when this isolate has none yet; most recently used last. */
  private counter(key: string, window: number, now: number): Counter {
    let c = this.counters.get(key);
    const orphan = c ? undefined : this.orphans.get(key);
    if (c) {
      this.counters.delete(key);
    } else if (orphan) {
      // Dropped with members not yet reported, and back before they were: taken back whole.
      c = orphan;
      this.orphans.delete(key);
      this.forgotten.delete(key);
      if (this.counters.size >= MAX_COUNTERS) this.evict();
    } else {
      c = new Counter(key, window);
      const first = this.firstOf(key, window, now);
      if (first) {
        this.firsts.delete(key);
        c.members.push(first.member);
        c.times.push(first.at);
        c.unreported = 1;
      }
      if (this.counters.size >= MAX_COUNTERS) this.evict();
    }
    this.counters.set(key, c);
    c.prune(now);
    return c;
  }

  /**
   * Drops the least recently used tenth of the counters, whatever they hold: memory stays bounded
   * whatever an attacker sends. A dropped counter's unreported members go to the ledger with the next
   * flush (`orphans`), and a dropped counter the ledger knows of asks it again before it admits
   * anything (`forgotten`). Only counters with a call in flight stay.
   */
  private evict() {
    let n = MAX_COUNTERS / 10;
    for (const [key, c] of this.counters) {
      if (n <= 0) break;
      if (c.inflight || c.waiting) continue;
      this.counters.delete(key);
      if (c.pending()) {
        if (this.orphans.size >= MAX_COUNTERS) this.orphans.delete(this.orphans.keys().next().value as string);
        this.orphans.set(key, c);
      }
      if (c.reported || c.snap || c.pending()) {
        if (this.forgotten.size >= MAX_COUNTERS) this.forgotten.delete(this.forgotten.values().next().value as string);
        this.forgotten.add(key);
      }
      n--;
    }
  }

  /**
   * Reports the counters' unreported members (with when each was admitted) and asks about `probe`
   * members, one call per shard. The counters' accounting is settled once, by the answer, a failure,
   * or the ledger's timeout (LEDGER_TIMEOUT_MS), whichever comes first (a report that timed out is sent again with the
   * next; the ledger counts a member once). An answer that comes late still refreshes the count, and
   * its members not yet sent again are no longer.
   */
  private sync(ledger: LedgerPort, items: Item[]): Promise<LedgerCount[]> {
    const sends = items.map(({ counter: c }) => {
      const add = c.takePending();
      c.inflight += add.length;
      c.reported = true;
      return add;
    });
    let settled = false;
    const settle = (delivered: boolean) => {
      if (settled) return;
      settled = true;
      items.forEach(({ counter: c }, i) => {
        const n = sends[i]?.length ?? 0;
        c.inflight -= n;
        // Not delivered: sent again with the next report (a later call may have been delivered
        // meanwhile, so these are not the newest members; those of them that left the window meanwhile no longer count).
        if (!delivered) c.failed(sends[i] ?? []);
      });
    };
    const answers: LedgerCount[] = [];
    const apply = (i: number, answer: LedgerCount) => {
      const { counter: c, probe } = items[i] as Item;
      answers[i] = answer;
      // Answers may arrive out of order; an older one would undercount.
      if (answer.seq > c.snapSeq) {
        c.snap = answer.count;
        c.snapSeq = answer.seq;
        c.freesAt = answer.freesAt;
      }
      // Probed members the ledger already counts (through another isolate) are known here from now on.
      probe.forEach((member, k) => {
        const expires = answer.known[k] ?? 0;
        if (!expires) return;
        c.known ??= new Map();
        c.known.set(member, expires);
      });
    };
    const call = async (shard: number, indexes: number[], entries: LedgerEntry[]) => {
      const counts = await ledger.sync(
        shard,
        indexes.map((i) => entries[i] as LedgerEntry),
      );
      for (const [j, i] of indexes.entries()) apply(i, counts[j] as LedgerCount);
    };
    const all = (async () => {
      // Counters' keys and members, hashed as they leave for the ledger: a key once per counter, a
      // member to its first MEMBER_CHARS digits.
      const member = (m: string) => digestHex(m).slice(0, MEMBER_CHARS);
      const entries = items.map(
        ({ counter: c, probe }, i): LedgerEntry => ({
          key: c.ledgerKey(),
          window: c.window,
          add: (sends[i] ?? []).map(([m, at]) => [member(m), at]),
          probe: probe.map(member),
        }),
      );
      const byShard = new Map<number, number[]>();
      entries.forEach((e, i) => {
        const shard = Number.parseInt(e.key.slice(0, 4), 16) % SHARDS;
        byShard.get(shard)?.push(i) ?? byShard.set(shard, [i]);
      });
      await Promise.all([...byShard].map(([shard, indexes]) => call(shard, indexes, entries)));
      // Answered after its timeout: the ledger counts these members now, and so does the count just applied.
      if (settled) for (const [i, { counter: c }] of items.entries()) c.landed(sends[i] ?? []);
      settle(true);
      return answers;
    })();
    all.catch(() => settle(false));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const wait = ledger.timeoutMs ?? LEDGER_TIMEOUT_MS;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        settle(false);
        reject(new Error(`the ledger did not answer within ${wait} ms`));
      }, wait);
    });
    return Promise.race([all, timeout]).finally(() => clearTimeout(timer));
  }

  private async flush(ledger: LedgerPort): Promise<void> {
    const items: Item[] = [];
    for (const c of this.counters.values()) if (due(c)) items.push({ counter: c, probe: [] });
    for (const c of this.orphans.values()) if (c.pending() && !c.inflight) items.push({ counter: c, probe: [] });
    if (!items.length) return;
    await this.sync(ledger, items).then(
      () => {
        // Delivered: the ledger counts them now (a key that comes back asks it: `forgotten`).
        for (const { counter: c } of items) if (this.orphans.get(c.key) === c && !c.pending()) this.orphans.delete(c.key);
      },
      (err) => unreachable(items.length, err),
    );
  }

  private look(ask: Ask, now: number): Look {
    const c = this.counters.get(ask.key) ?? this.orphans.get(ask.key);
    if (c) {
      c.prune(now);
      return { c, fresh: c.fresh(ask.members), view: c.view(), unsynced: c.pending() + c.inflight, forgotten: false };
    }
    const unique = ask.members.length === 1 ? ask.members : [...new Set(ask.members)];
    const first = this.firstOf(ask.key, ask.window, now);
    const forgotten = this.forgotten.has(ask.key);
    if (!first) return { fresh: unique, view: 0, unsynced: 0, forgotten };
    return { fresh: unique.filter((m) => m !== first.member), view: 1, unsynced: 1, forgotten };
  }

  /**
   * Commits a decided request: its fresh members into their counters (a lone first member as a first
   * sighting). `looks`: this isolate's view of each ask, taken since the last pause.
   */
  private commit(asks: Ask[], now: number, looks = asks.map((ask) => this.look(ask, now))): { ok: true; report: boolean } {
    // The counters it counts into become the most recently used first: a counter made below may evict
    // the least recently used tenth, and one of these, dropped and made again, would forget the ledger's count.
    for (const [i, ask] of asks.entries()) {
      const { c, fresh } = looks[i] as Look;
      if (c && fresh.length && this.counters.get(ask.key) === c) {
        this.counters.delete(ask.key);
        this.counters.set(ask.key, c);
      }
    }
    let report = false;
    for (const [i, ask] of asks.entries()) {
      const { c, fresh, forgotten, view } = looks[i] as Look;
      if (!fresh.length) continue;
      // No counter and no first sighting (`view` 0; asks name distinct counters): this is the first.
      if (!c && !forgotten && fresh.length === 1 && !view) {
        this.rememberFirst(ask.key, fresh[0] as string, now);
        continue;
      }
      const counted = this.counter(ask.key, ask.window, now);
      counted.add(fresh, now);
      report ||= due(counted);
    }
    return { ok: true, report: report || this.orphans.size > 0 };
  }
}
