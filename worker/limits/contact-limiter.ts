import { DurableObject } from "cloudflare:workers";

export const DAY_MS = 24 * 60 * 60 * 1000;

export type TakeResult = { ok: true } | { ok: false; activity_id: string; retryAfterSeconds: number };

/**
 * Ortto's limit of 50 events per activity per contact per 24 hours, enforced before Ortto
 * sees anything. One object per contact (named by a hash of their identity, never the email
 * itself) holds a sliding window of event times per activity. A Durable Object, because the
 * count must be exact across every Cloudflare location: a per-location counter would let a
 * forger spread 50 events over each of hundreds of locations.
 */
export class ContactActivityLimiter extends DurableObject {
  /** The windows, read from storage once per object lifetime; storage stays the source of truth. */
  #windows?: Map<string, number[]>;
  #alarmSet = false;

  async #load(): Promise<Map<string, number[]>> {
    this.#windows ??= await this.ctx.storage.list<number[]>();
    return this.#windows;
  }

  /**
   * Takes `counts` events (per activity id) if every activity stays within `limit` in the
   * window; otherwise takes nothing and says which activity is over and when it frees up.
   */
  async take(counts: Record<string, number>, limit: number, now = Date.now()): Promise<TakeResult> {
    const all = await this.#load();
    const windows = new Map<string, number[]>();
    for (const [activityId, n] of Object.entries(counts)) {
      const times = (all.get(activityId) ?? []).filter((t) => t > now - DAY_MS);
      const excess = times.length + n - limit;
      if (excess > 0) {
        // The window frees a slot each time an old event leaves it; wait until enough have left.
        const freesAt = (times[Math.min(excess, times.length) - 1] ?? now) + DAY_MS;
        return { ok: false, activity_id: activityId, retryAfterSeconds: Math.max(1, Math.ceil((freesAt - now) / 1000)) };
      }
      windows.set(activityId, [...times, ...Array<number>(n).fill(now)]);
    }
    for (const [activityId, times] of windows) all.set(activityId, times);
    await this.ctx.storage.put(Object.fromEntries(windows));
    if (!this.#alarmSet) {
      this.#alarmSet = true;
      if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now + DAY_MS);
    }
    return { ok: true };
  }

  /** Gives back events taken for a request that was then refused elsewhere. */
  async refund(counts: Record<string, number>): Promise<void> {
    const all = await this.#load();
    for (const [activityId, n] of Object.entries(counts)) {
      const times = all.get(activityId) ?? [];
      const kept = times.slice(0, Math.max(0, times.length - n));
      all.set(activityId, kept);
      await this.ctx.storage.put(activityId, kept);
    }
  }

  /** Forgets a contact a day after their last event, so storage does not grow with every visitor ever seen. */
  async alarm(): Promise<void> {
    const now = Date.now();
    const all = await this.#load();
    this.#alarmSet = false;
    let newest = 0;
    for (const [activityId, times] of all) {
      const live = times.filter((t) => t > now - DAY_MS);
      if (live.length) all.set(activityId, live);
      else all.delete(activityId);
      if (live.length) await this.ctx.storage.put(activityId, live);
      else await this.ctx.storage.delete(activityId);
      newest = Math.max(newest, ...live);
    }
    if (newest) {
      this.#alarmSet = true;
      await this.ctx.storage.setAlarm(newest + DAY_MS);
    } else await this.ctx.storage.deleteAll();
  }
}
