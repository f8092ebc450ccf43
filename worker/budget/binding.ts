/**
 * The pacer as a sender reaches it, apart from its class (pacer.ts imports `cloudflare:workers`),
 * so that the request path and Node tests can reach it without loading the Durable Object runtime.
 */
import type { RelayEnv } from "../env.ts";
import type { AccountView, RefusalAnswer } from "./pacer.ts";
import type { Permit, Probe } from "./refusals.ts";
import type { Slot, SyncAnswer, SyncReport } from "./seconds.ts";

/** What the queue consumer tells the pacer about the batch it is delivering: backlog signals for /healthz. */
export interface BatchNote {
  messages: number;
  oldestAgeMs: number;
  at: number;
}

/** The `UpstreamPacer` Durable Object's methods, as a sender calls them (a fake in Node tests). */
export interface PacerPort {
  sync(report: SyncReport): Promise<SyncAnswer & AccountView>;
  admit(ttlMs: number): Promise<Permit & AccountView>;
  slot(maxWaitMs: number, batch?: BatchNote): Promise<Slot & AccountView>;
  probe(site: string, ttlMs: number): Promise<Probe>;
  refused(report: { status: number; site?: string; permit?: string }): Promise<RefusalAnswer>;
  succeeded(report: { site?: string; permit?: string }): Promise<RefusalAnswer>;
  pause(untilMs: number): Promise<number>;
}

/**
 * The account's pacer, or undefined where the binding is absent (a benchmark's stub environment).
 * The stub is made at the first call: most requests never call the pacer, and naming the object
 * costs a hash.
 */
export function pacerOf(env: RelayEnv): PacerPort | undefined {
  const namespace: RelayEnv["UPSTREAM_PACER"] | undefined = env.UPSTREAM_PACER;
  if (!namespace) return undefined;
  let stub: PacerPort | undefined;
  const pacer = () => {
    stub ??= namespace.get(namespace.idFromName("account"));
    return stub;
  };
  return {
    sync: (report) => pacer().sync(report),
    admit: (ttlMs) => pacer().admit(ttlMs),
    slot: (maxWaitMs, batch) => pacer().slot(maxWaitMs, batch),
    probe: (site, ttlMs) => pacer().probe(site, ttlMs),
    refused: (report) => pacer().refused(report),
    succeeded: (report) => pacer().succeeded(report),
    pause: (untilMs) => pacer().pause(untilMs),
  };
}
