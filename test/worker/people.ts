import { env } from "cloudflare:workers";
import { afterEach, beforeEach, vi } from "vitest";
import { newIsolate } from "../../worker/isolate.ts";
import { type Ask, LEDGER_TIMEOUT_MS, ledgerOf } from "../../worker/limits/counts.ts";
import { DAY_MS } from "../../worker/limits/index.ts";
import type { LedgerEntry } from "../../worker/limits/ledger-object.ts";
import { emulator, loggedIn, type PostOptions, postWith as postThrough } from "./helpers.ts";

/** The limits tests' server token, and their bindings: open mode, with the account's request budget
 * high enough never to coalesce (the budget project tests that), and Ortto given 30 s, not 5, before
 * a request goes to the queue: on a loaded machine 200 concurrent forwards can take longer than 5 s,
 * and these tests count what the limits let through, not what a slow upstream makes of it. */
export const SERVER_TOKEN = "server-token-for-tests";
export const open = { SERVER_TOKEN, ORTTO_MAX_RPS: "1000000", UPSTREAM_TIMEOUT_MS: "30000" };

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
export const admit = (bindings: typeof env, asks: Ask[]) => isolate.limits.admit(ledgerOfTest(bindings), asks);
/** That isolate's counts reporting what is due to the ledger of `bindings`. */
export const flushSoon = (bindings: typeof env) => isolate.limits.flushSoon(ledgerOfTest(bindings));
/** The ledger of `bindings`, waited for as their LEDGER_TIMEOUT_MS says (as the app does). */
const ledgerOfTest = (bindings: typeof env) => ledgerOf(bindings, Number(bindings.LEDGER_TIMEOUT_MS ?? LEDGER_TIMEOUT_MS));
/** The requests from now on reach a new isolate, which knows only the ledger. */
export const reachNewIsolate = () => {
  isolate = newIsolate();
};

/**
 * Each test of the file starts with an emptied emulator in a new isolate, and leaves a new isolate
 * (and real timers) behind: no test's counts reach the next.
 */
export function eachTestInANewIsolate() {
  beforeEach(async () => {
    await emulator.reset();
    reachNewIsolate();
  });
  afterEach(() => {
    vi.useRealTimers();
    reachNewIsolate();
  });
}

/**
 * postWith, sending again after its Retry-After (at most 5 times) a refusal "to send again in a
 * moment", as the snippet does: on a loaded machine the ledger may not answer within
 * LEDGER_TIMEOUT_MS. Any other answer, a limit's 429 included, is returned as it is.
 */
export async function postServed(bindings: Parameters<typeof postWith>[0], body: unknown, options?: PostOptions) {
  let res = await postWith(bindings, body, options);
  for (let tries = 0; tries < 5 && res.status === 429; tries++) {
    const text = await res.clone().text();
    if (!text.includes("could not confirm")) break;
    await new Promise((r) => setTimeout(r, Number(res.headers.get("Retry-After")) * 1000));
    res = await postWith(bindings, body, options);
  }
  return res;
}

/** Every activity Ortto received, and the people they were for. */
export const forwarded = async () => (await emulator.requests()).flatMap((r) => r.body.activities ?? []);
export const emailsForwarded = async () => new Set((await forwarded()).map((a) => a.fields?.["str::email"]));

/** One new member of `key`, admitted or not; a due report is flushed before the next, as waitUntil would. */
export async function one(key: string, limit = 50, bindings: typeof env = env): Promise<boolean> {
  const ask: Ask = { key, limit, window: DAY_MS, members: [crypto.randomUUID()] };
  const verdict = await admit(bindings, [ask]);
  if (verdict.ok && verdict.report) await flushSoon(bindings);
  return verdict.ok;
}
