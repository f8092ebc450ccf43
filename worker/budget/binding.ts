/**
 * The pacer's binding, apart from its class (pacer.ts imports `cloudflare:workers`), so that the
 * request path and Node tests can reach it without loading the Durable Object runtime.
 */
import type { RelayEnv } from "../env.ts";
import type { UpstreamPacer } from "./pacer.ts";

/** What the queue consumer tells the pacer about the batch it is delivering: backlog signals for /healthz. */
export interface BatchNote {
  messages: number;
  oldestAgeMs: number;
  at: number;
}

/** The account's pacer, or undefined where the binding is absent (a benchmark's stub environment). */
export function pacerOf(env: RelayEnv): DurableObjectStub<UpstreamPacer> | undefined {
  const namespace: RelayEnv["UPSTREAM_PACER"] | undefined = env.UPSTREAM_PACER;
  return namespace?.get(namespace.idFromName("account"));
}
