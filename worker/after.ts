import type { Context } from "hono";

/**
 * Work that the answer need not wait for (the log line, reports to the ledger): handed to
 * `waitUntil`, so it runs after the response is sent. Without an execution context (Hono's
 * `app.request` in tests) the promise simply runs on its own.
 */
export function afterAnswer(c: Context, work: Promise<unknown>): void {
  laterOf(c)?.(work);
}

/** `waitUntil` of the request's execution context, or undefined without one (Hono's `app.request` in tests). */
export function laterOf(c: Context): ((work: Promise<unknown>) => void) | undefined {
  try {
    const ctx = c.executionCtx;
    return (work) => ctx.waitUntil(work);
  } catch {
    return undefined;
  }
}
