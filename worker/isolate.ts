import { IsolateBudget } from "./budget/gate.ts";
import { DeliveryStats } from "./delivery/stats.ts";
import { LimitCounts } from "./limits/counts.ts";

/** Milliseconds since the epoch: by default `Date.now()` as it is at each call (so a faked Date is seen). */
export type Clock = () => number;

/**
 * What an isolate keeps in memory between requests: its counts toward the limits, its view of
 * the account's request budget and its delivery signals. Made once per isolate (worker/index.ts)
 * and handed to every request through Hono's context (`c.var.limits`, `c.var.budget`,
 * `c.var.isolate`) and to the queue consumer; a test makes a new one to stand for a new isolate.
 */
export interface Isolate {
  limits: LimitCounts;
  budget: IsolateBudget;
  /** Counters for /healthz, written by the handler and the queue consumer. */
  delivery: DeliveryStats;
  /** Whether this isolate has logged that it runs in open mode (once per isolate, not per request). */
  openModeLogged: boolean;
}

export const newIsolate = (clock: Clock = () => Date.now()): Isolate => ({
  limits: new LimitCounts(clock),
  budget: new IsolateBudget(clock),
  delivery: new DeliveryStats(),
  openModeLogged: false,
});
