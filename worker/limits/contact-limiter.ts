import { DurableObject } from "cloudflare:workers";

export const DAY_MS = 24 * 60 * 60 * 1000;

/** One event to count: its activity, and its `key|created`, so a re-send is not counted twice. */
export interface CountedEvent {
  activity_id: string;
  event: string;
}

export type TakeResult = { ok: true } | { ok: false; activity_id: string; retryAfterSeconds: number };

/** A window entry: when the event was counted, and which event it was. */
type Entry = [time: number, event: string];

/**
 * Ortto's limit of 50 events per activity per contact per 24 hours, enforced before Ortto
 * sees anything. One object per contact identifier (named by a hash of it, never the email
 * itself) holds a sliding window of events per activity. A Durable Object, because the count
 * must be exact across every Cloudflare location: a per-location counter would let a forger
 * spread 50 events over each of hundreds of locations.
 */
export class ContactActivityLimiter extends DurableObject {
  /** The windows, read from storage once per object lifetime; storage stays the source of truth. */
  #windows?: Map<string, Entry[]>;
  #alarmSet = false;

  async #load(): Promise<Map<string, Entry[]>> {
    this.#windows ??= await this.ctx.storage.list<Entry[]>();
    return this.#windows;
  }

  /**
   * Counts `events` if every activity stays within `limit` in the window; otherwise counts
   * nothing and says which activity is over and when it frees up. An event already in the
   * window (a re-send with the same key and created) passes without being counted again.
   */
  async take(events: CountedEvent[], limit: number, now = Date.now()): Promise<TakeResult> {
    const all = await this.#load();
    const windows = new Map<string, Entry[]>();
    for (const { activity_id, event } of events) {
      const window = windows.get(activity_id) ?? (all.get(activity_id) ?? []).filter(([t]) => t > now - DAY_MS);
      if (!window.some(([, e]) => e === event)) window.push([now, event]);
      windows.set(activity_id, window);
    }
    for (const [activityId, window] of windows) {
      const excess = window.length - limit;
      if (excess > 0) {
        // The window frees a slot each time an old event leaves it; wait until enough have left.
        const freesAt = (window[excess - 1]?.[0] ?? now) + DAY_MS;
        return { ok: false, activity_id: activityId, retryAfterSeconds: Math.max(1, Math.ceil((freesAt - now) / 1000)) };
      }
    }
    for (const [activityId, window] of windows) all.set(activityId, window);
    await this.ctx.storage.put(Object.fromEntries(windows));
    if (!this.#alarmSet) {
      this.#alarmSet = true;
      if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now + DAY_MS);
    }
    return { ok: true };
  }

  /** Gives back events counted for a request that was then refused elsewhere. */
  async refund(events: CountedEvent[]): Promise<void> {
    const all = await this.#load();
    const changed = new Map<string, Entry[]>();
    for (const { activity_id, event } of events) {
      const window = changed.get(activity_id) ?? all.get(activity_id) ?? [];
      changed.set(
        activity_id,
        window.filter(([, e]) => e !== event),
      );
    }
    for (const [activityId, window] of changed) all.set(activityId, window);
    await this.ctx.storage.put(Object.fromEntries(changed));
  }

  /** Forgets a contact a day after their last event, so storage does not grow with every visitor ever seen. */
  async alarm(): Promise<void> {
    const now = Date.now();
    const all = await this.#load();
    this.#alarmSet = false;
    let newest = 0;
    for (const [activityId, window] of all) {
      const live = window.filter(([t]) => t > now - DAY_MS);
      if (live.length) {
        all.set(activityId, live);
        await this.ctx.storage.put(activityId, live);
      } else {
        all.delete(activityId);
        await this.ctx.storage.delete(activityId);
      }
      for (const [t] of live) newest = Math.max(newest, t);
    }
    if (newest) {
      this.#alarmSet = true;
      await this.ctx.storage.setAlarm(newest + DAY_MS);
    } else await this.ctx.storage.deleteAll();
  }
}
