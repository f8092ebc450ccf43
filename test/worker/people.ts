import { env } from "cloudflare:workers";
import { newIsolate } from "../../worker/isolate.ts";
import { type Ask, ledgerOf } from "../../worker/limits/counts.ts";
import type { LedgerEntry } from "../../worker/limits/ledger-object.ts";
import { loggedIn, postWith as postThrough } from "./helpers.ts";

/** The limits tests' server token, and their bindings: open mode, with the account's request budget
 * high enough never to coalesce (the budget project tests that). */
export const SERVER_TOKEN = "server-token-for-tests";
export const open = { SERVER_TOKEN, ORTTO_MAX_RPS: "1000000" };

/** A visitor's logged-in event, keyed and dated as the snippet sends it. */
export const person = (email: string, extra: Record<string, unknown> = {}) =>
  loggedIn({
    fields: { "str::first": "Chris", "str::email": email },
    key: crypto.randomUUID(),
    created: new Date().toISOString(),
    ...extra,
  });

/** An email no other test uses. */
export const unique = (name: string) => `${name}-${crypto.randomUUID()}@example.com`;

type Sync = (entries: LedgerEntry[]) => Promise<unknown>;
/** The real LIMIT_LEDGER binding, with each shard's `sync` passed through `wrap` (to slow, fail or watch it). */
export const wrapLedger = (wrap: (real: Sync) => Sync) => {
  const real = env.LIMIT_LEDGER;
  return {
    idFromName: (name: string) => real.idFromName(name),
    get: (id: DurableObjectId) => {
      const stub = real.get(id) as unknown as { sync: Sync };
      return { sync: wrap((entries) => stub.sync(entries)) };
    },
  } as unknown as typeof env.LIMIT_LEDGER;
};

/** The isolate the limits tests' requests reach: its counts are theirs to watch and to forget. */
let isolate = newIsolate();
/** A POST through the app over that isolate (see helpers.ts `postWith`). */
export const postWith = (...[bindings, body, options]: Parameters<typeof postThrough>) =>
  postThrough(bindings, body, { ...options, isolate });
/** That isolate's counts admitting `asks`, with the ledger of `bindings`. */
export const admit = (bindings: typeof env, asks: Ask[]) => isolate.limits.admit(ledgerOf(bindings), asks);
/** That isolate's counts reporting what is due to the ledger of `bindings`. */
export const flushSoon = (bindings: typeof env) => isolate.limits.flushSoon(ledgerOf(bindings));
/** The requests from now on reach a new isolate, which knows only the ledger. */
export const forgetCounters = () => {
  isolate = newIsolate();
};
