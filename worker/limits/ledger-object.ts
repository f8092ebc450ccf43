import { DurableObject } from "cloudflare:workers";
import { MEMBER_CHARS } from "./counts.ts";

/** One counter's part of a sync: members to record, and members to ask about without recording. */
export interface LedgerEntry {
  /** The counter, hashed (a contact and activity, or a client network): never a raw email. */
  key: string;
  /** How long a member counts, in ms (24 h for a contact's events, 1 h for a network's people). */
  window: number;
  /**
   * Members to record (hashed event ids or identifiers, MEMBER_CHARS hex digits; longer ones are
   * known by their first MEMBER_CHARS), each with when it was admitted; one already recorded is not counted twice.
   */
  add: [member: string, admittedAt: number][];
  /** Members to test: how many of them the counter already holds. */
  probe: string[];
}

export interface LedgerCount {
  /** Distinct members in the window, after `add`. */
  count: number;
  /** For each of `probe`, when it leaves the window if it is already counted (a re-send, a person seen through another isolate), else 0. */
  known: number[];
  /** When the oldest counted member leaves the window (ms), or 0 when the counter is empty. */
  freesAt: number;
  /** The order in which this object answered (increasing), so an isolate never applies an older answer over a newer one. */
  seq: number;
}

/** A member by its first MEMBER_CHARS characters, whoever wrote it. */
const trimmed = (member: string) => (member.length > MEMBER_CHARS ? member.slice(0, MEMBER_CHARS) : member);

/** Members one row holds at most (~2 KB, within one SQLite page): a counter with more spans rows. */
const PART = 64;

/**
 * Members whose counters' rows this object keeps in memory as well, at most (~150 B each with its
 * row's text: ~7.5 MB), the least recently used counters going first: it alone writes the rows, so
 * a report on a counter it holds reads none, and tells a new member from one held by a lookup.
 */
export const CACHED_MEMBERS = 50_000;

/** Rows one statement writes at most (6 values each, of the 100 a statement may bind). */
const WRITE_ROWS = 16;

/** How often expired members are swept. */
const SWEEP_MS = 60 * 60 * 1000;

const NEVER = Number.POSITIVE_INFINITY;

/**
 * A row of the `counters` table: part `p` of counter `k`, holding `n` (at most PART) of its members
 * as `,"member",expires` each in `m`, the first of them to leave the window at `f`, the last at `e`.
 */
type Row = { k: string; p: number; m: string; n: number; f: number; e: number };

/** A counter as stored: its rows (expired ones too, in order of part), and each member with when it leaves the window (the latest, if it came back). */
type Stored = { rows: Row[]; members: Map<string, number> };

/**
 * The shared side of the relay's counting (see limits/counts.ts): one of a few shard objects,
 * each holding the members of many counters in one SQLite table, so a request costs at most one
 * call per shard — and usually none, since isolates report here after answering. A counter's
 * members are packed in a row (more than PART span rows), each with when it leaves the window,
 * and the row keeps how many it holds and when the first leaves: a report reads its counter's row
 * and writes it once, not a row per member, and reads the members one by one only once one has
 * left the window or to answer probes. Exact: a member a row holds is never counted twice.
 */
export class LimitLedger extends DurableObject {
  #ready = false;
  #alarmSet = false;
  #seq = 0;
  /** The counters used last, as stored; `#cachedMembers` counts their members. */
  #cache = new Map<string, Stored>();
  #cachedMembers = 0;
  /** Rows to write, six values each, written together (`#write`). */
  #writes: (string | number)[] = [];

  /**
   * Writes the rows the counting asked for, WRITE_ROWS a statement: an update in place when the row
   * is there (one row written, where a replace is two: its key's index entry too).
   */
  #write() {
    const sql = this.#table();
    const values = this.#writes;
    this.#writes = [];
    for (let i = 0; i < values.length; i += WRITE_ROWS * 6) {
      const part = values.slice(i, i + WRITE_ROWS * 6);
      sql.exec(
        `INSERT INTO counters VALUES ${Array(part.length / 6).fill("(?, ?, ?, ?, ?, ?)")} ON CONFLICT DO UPDATE SET m = excluded.m, n = excluded.n, f = excluded.f, e = excluded.e`,
        ...part,
      );
    }
  }

  #table() {
    const sql = this.ctx.storage.sql;
    if (!this.#ready) {
      this.#ready = true;
      sql.exec("CREATE TABLE IF NOT EXISTS counters (k TEXT, p INT, m TEXT, n INT, f INT, e INT, PRIMARY KEY (k, p))");
      // A ledger that kept a row per member (`members`, the same keys and members): its live members
      // are packed into their counters' rows, once, synchronously, so no call sees the table half moved.
      if (sql.exec("SELECT 1 FROM sqlite_master WHERE name = 'members'").toArray().length) {
        const now = Date.now();
        const old = new Map<string, [string, number][]>();
        for (const { counter, member, expires } of sql.exec<{ counter: string; member: string; expires: number }>(
          "SELECT * FROM members WHERE expires > ?",
          now,
        ))
          old.get(counter)?.push([member, expires]) ?? old.set(counter, [[member, expires]]);
        for (const [key, add] of old) this.#counter(key, add, [], now, 0);
        this.#write();
        this.#evict();
        sql.exec("DROP TABLE members");
      }
    }
    return sql;
  }

  /** A counter's rows and members as stored: from memory, or read (and kept: `#evict` makes room once the rows are written). */
  #stored(key: string): Stored {
    // First, so that a table moved from its older shape (which fills memory) is read once.
    const sql = this.#table();
    let stored = this.#cache.get(key);
    if (stored) this.#cache.delete(key);
    else {
      const rows = sql.exec<Row>("SELECT * FROM counters WHERE k = ? ORDER BY p", key).toArray();
      const members = new Map<string, number>();
      for (const { m } of rows) {
        const list = JSON.parse(`[${m.slice(1)}]`) as (string | number)[];
        for (let i = 0; i < list.length; i += 2) {
          const member = trimmed(list[i] as string);
          const expires = list[i + 1] as number;
          if (expires > (members.get(member) ?? 0)) members.set(member, expires);
        }
      }
      stored = { rows, members };
      this.#cachedMembers += members.size;
    }
    this.#cache.set(key, stored);
    return stored;
  }

  /**
   * The least recently used counters leave memory until it holds at most CACHED_MEMBERS members.
   * Only once their rows are written: a counter that left with rows still to write would be read
   * back without them by a later entry of the same call.
   */
  #evict() {
    for (const [old, { members: held }] of this.#cache) {
      if (this.#cachedMembers <= CACHED_MEMBERS) break;
      this.#cache.delete(old);
      this.#cachedMembers -= held.size;
    }
  }

  /**
   * Records `add` in a counter and counts it, as the call of order `seq` answers: the last of the
   * counter's live rows is written again if a member was new (a full one starts the next). With
   * `window`, each of `add` is a member and when it was admitted, counted from then (no later than
   * now) for `window`; without, a member and when it leaves the window.
   */
  #counter(key: string, add: [string, number][], probe: string[], now: number, seq: number, window?: number): LedgerCount {
    const { rows, members } = this.#stored(key);
    const held = (member: string) => {
      const expires = members.get(member) ?? 0;
      return expires > now ? expires : 0;
    };
    const known = probe.map((member) => held(trimmed(member)));
    let count = 0;
    let freesAt = NEVER;
    // The last live row as it will be written.
    let { p, m, n, f, e }: Omit<Row, "k"> = { p: 0, m: "", n: 0, f: NEVER, e: 0 };
    for (const row of rows) {
      if (row.e <= now) continue;
      ({ p, m, n, f, e } = row);
      if (f <= now) {
        // A member has left the window: the row without it.
        const list = JSON.parse(`[${m.slice(1)}]`) as (string | number)[];
        [m, n, f] = ["", 0, NEVER];
        for (let i = 0; i < list.length; i += 2) {
          const expires = list[i + 1] as number;
          if (expires <= now) continue;
          m += `,"${trimmed(list[i] as string)}",${expires}`;
          n++;
          f = Math.min(f, expires);
        }
      }
      count += n;
      freesAt = Math.min(freesAt, f);
    }
    let changed = false;
    const put = () => {
      this.#writes.push(key, p, m, n, f, e);
      const i = rows.findIndex((row) => row.p >= p);
      rows.splice(i < 0 ? rows.length : i, rows[i]?.p === p ? 1 : 0, { k: key, p, m, n, f, e });
    };
    for (const [raw, at] of add) {
      const member = trimmed(raw);
      if (held(member)) continue;
      const expires = window === undefined ? at : Math.min(at, now) + window;
      if (n >= PART) {
        if (changed) put();
        [p, m, n, f, e] = [p + 1, "", 0, NEVER, 0];
      }
      if (!members.has(member)) this.#cachedMembers++;
      members.set(member, expires);
      // Members are hex digits: as a JSON string, they need no escaping.
      m += `,"${member}",${expires}`;
      n++;
      count++;
      f = Math.min(f, expires);
      e = Math.max(e, expires);
      freesAt = Math.min(freesAt, expires);
      changed = true;
    }
    if (changed) put();
    return { count, known, freesAt: count ? freesAt : 0, seq };
  }

  /** Records and counts. Each entry: its counter's rows read once, and the last written again if a member is new. */
  async sync(entries: LedgerEntry[], now = Date.now()): Promise<LedgerCount[]> {
    // Calls run one at a time here; time orders them across restarts, the sequence within a millisecond.
    this.#seq = Math.max(now * 1000, this.#seq + 1);
    const seq = this.#seq;
    // Counted from when the isolate admitted it (it may report later); one whose time ran out counts again.
    let counts: LedgerCount[];
    try {
      counts = entries.map(({ key, window, add, probe }) => this.#counter(key, add, probe, now, seq, window));
      this.#write();
      this.#evict();
    } catch (err) {
      // A write that failed: what memory holds may be ahead of the rows, so it is read again.
      this.#cache.clear();
      this.#cachedMembers = 0;
      this.#writes = [];
      throw err;
    }
    if (!this.#alarmSet) {
      this.#alarmSet = true;
      if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now + SWEEP_MS);
    }
    return counts;
  }

  /** Forgets rows whose members have all left the window, so storage holds only the last day's; sleeps when nothing is left. */
  async alarm(): Promise<void> {
    const sql = this.#table();
    const now = Date.now();
    sql.exec("DELETE FROM counters WHERE e <= ?", now);
    // Kept as stored: a counter's rows and members in memory lose what the statement deleted.
    this.#cache.clear();
    this.#cachedMembers = 0;
    const left = sql.exec<{ n: number }>("SELECT count(*) AS n FROM counters").one().n;
    if (left) await this.ctx.storage.setAlarm(now + SWEEP_MS);
    else {
      await this.ctx.storage.deleteAll();
      this.#cache.clear();
      this.#cachedMembers = 0;
      this.#ready = false;
      this.#alarmSet = false;
    }
  }
}
