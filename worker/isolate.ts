import { IsolateBudget } from "./budget/gate.ts";
import { LimitCounts } from "./limits/counts.ts";

/** Milliseconds since the epoch: by default `Date.now()` as it is at each call (so a faked Date is seen). */
export type Clock = () => number;

/**
 * What an isolate keeps in memory between requests: its counts toward the limits and its view of
 * the account's request budget. Made once per isolate (worker/index.ts) and handed to every
 * request through Hono's context (`c.var.limits`, `c.var.budget`) and to the queue consumer; a
 * test makes a new one to stand for a new isolate.
 */
export interface Isolate {
  limits: LimitCounts;
  budget: IsolateBudget;
}

export const newIsolate = (clock: Clock = () => Date.now()): Isolate => ({
  limits: new LimitCounts(clock),
  budget: new IsolateBudget(clock),
});
