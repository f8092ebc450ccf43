import { DurableObject } from "cloudflare:workers";

/** One counter's part of a sync: members to record, and members to ask about without recording. */
export interface LedgerEntry {
  /** The counter, hashed (a contact and activity, or a client network): never a raw email. */
  key: string;
  /** How long a member counts, in ms (24 h for a contact's events, 1 h for a network's people). */
  window: number;
  /** Members to record (hashed event ids or identifiers), each with when it was admitted; one already recorded is not counted twice. */
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

/** Members one INSERT records: 3 bound values each, and a Durable Object's SQL takes at most 100 a statement. */
const ROWS_PER_INSERT = 32;

/** How often expired members are swept. */
const SWEEP_MS = 60 * 60 * 1000;

/**
 * The shared side of the relay's counting (see limits/counts.ts): one of a few shard objects,
 * each holding the members of many counters in one SQLite table, so a request costs at most one
 * call per shard — and usually none, since isolates report here after answering. Exact: a member
 * is one row, keyed by counter and member, so re-sends are never counted twice.
 */
export class LimitLedger extends DurableObject {
  #ready = false;
  #alarmSet = false;
  #seq = 0;

  #table() {
    if (!this.#ready) {
      this.ctx.storage.sql.exec(
        "CREATE TABLE IF NOT EXISTS members (counter TEXT NOT NULL, member TEXT NOT NULL, expires INTEGER NOT NULL, PRIMARY KEY (counter, member)) WITHOUT ROWID",
      );
      this.#ready = true;
    }
    return this.ctx.storage.sql;
  }

  /** Records and counts. Each entry: one upsert per added member, one count, one lookup per probed member. */
  async sync(entries: LedgerEntry[], now = Date.now()): Promise<LedgerCount[]> {
    const sql = this.#table();
    // Calls run one at a time here; time orders them across restarts, the sequence within a millisecond.
    this.#seq = Math.max(now * 1000, this.#seq + 1);
    const seq = this.#seq;
    const counts = entries.map(({ key, window, add, probe }) => {
      // Counted from when the isolate admitted it (it may report later); one whose time ran out counts
      // again. Up to ROWS_PER_INSERT members a statement: rows are upserted one after another, as by
      // separate statements, at a fraction of the calls.
      for (let from = 0; from < add.length; from += ROWS_PER_INSERT) {
        const rows = add.slice(from, from + ROWS_PER_INSERT);
        const values: (string | number)[] = [];
        for (const [member, at] of rows) values.push(key, member, Math.min(at, now) + window);
        sql.exec(
          `INSERT INTO members VALUES ${rows.map(() => "(?, ?, ?)").join(", ")} ON CONFLICT (counter, member) DO UPDATE SET expires = excluded.expires WHERE members.expires <= ?`,
          ...values,
          now,
        );
      }
      const row = sql
        .exec<{ n: number; f: number | null }>(
          "SELECT count(*) AS n, min(expires) AS f FROM members WHERE counter = ? AND expires > ?",
          key,
          now,
        )
        .one();
      const known = probe.map(
        (member) =>
          sql
            .exec<{ e: number }>("SELECT expires AS e FROM members WHERE counter = ? AND member = ? AND expires > ?", key, member, now)
            .toArray()[0]?.e ?? 0,
      );
      return { count: row.n, known, freesAt: row.f ?? 0, seq };
    });
    if (!this.#alarmSet) {
      this.#alarmSet = true;
      if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now + SWEEP_MS);
    }
    return counts;
  }

  /** Forgets expired members, so storage holds only the last day's; sleeps when nothing is left. */
  async alarm(): Promise<void> {
    const sql = this.#table();
    const now = Date.now();
    sql.exec("DELETE FROM members WHERE expires <= ?", now);
    const left = sql.exec<{ n: number }>("SELECT count(*) AS n FROM members").one().n;
    if (left) await this.ctx.storage.setAlarm(now + SWEEP_MS);
    else {
      await this.ctx.storage.deleteAll();
      this.#ready = false;
      this.#alarmSet = false;
    }
  }
}
