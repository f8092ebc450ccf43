/**
 * The relay's two counting limits, asked of the ledger together so a request waits at most once:
 * - Ortto's 50 events per activity per contact per 24 h, for every identifier an activity
 *   carries (rotating the email while keeping a victim's external id does not escape it);
 * - in open mode, at most a budget of distinct people per client network per hour, so a
 *   stranger cannot mint people (each opted in to email) in bulk.
 */
import type { ActivityInput } from "../../shared/activities.ts";
import { RelayError } from "../errors.ts";
import { contactKeysOf } from "../identifiers.ts";
import type { Ask, Full, LedgerPort, LimitCounts } from "./counts.ts";
import { WIDE_NETWORK_FACTOR, wideNetwork } from "./network.ts";

export const DAY_MS = 24 * 60 * 60 * 1000;
export const HOUR_MS = 60 * 60 * 1000;
/** Contacts the log line names (hashed, worker/log.ts). */
export const LOGGED_PEOPLE = 10;

export interface LimitSettings {
  /** Events per activity per contact per 24 h. */
  contactActivityLimit: number;
  /** People per client network per hour; set in open mode for requests from pages, absent otherwise. */
  people?: { network: string; budget: number };
}

/** An event as a counter's member: a re-send (the same key and created) is the same member. */
const memberOf = (a: ActivityInput) => `${a.key}|${a.created}`;
/** A contact's counter for an activity. */
const counterOf = (contact: string, a: ActivityInput) => `${contact}|${a.activity_id}`;

/** An activity the daily limit per contact refuses: its position in the list counted, and why. */
export interface OverLimit {
  position: number;
  message: string;
}

/**
 * Counts a request's (already keyed) activities against its limits. The daily limit per contact is
 * judged per activity: the events a person has room for are admitted, in the request's order, and
 * the rest are returned (`over`), for the answer to name (a request that alone holds more than the
 * limit for a person has the events past it over); only when every activity is over is the request
 * refused, a 429 with Retry-After. The people budget, and a count the ledger could not confirm in time, refuse
 * the request as a whole. Returns the first LOGGED_PEOPLE contacts (kind and normalised value) for
 * the request's log, which hashes them, and whether the ledger is due a report (after the answer:
 * `flushSoon`).
 */
export async function takeLimits(
  counts: LimitCounts,
  ledger: LedgerPort,
  activities: ActivityInput[],
  settings: LimitSettings,
): Promise<{ contacts: string[]; report: boolean; over: OverLimit[] }> {
  const limit = settings.contactActivityLimit;
  const over: OverLimit[] = [];
  const message = `expected at most ${limit} events per activity per contact in 24 hours (Ortto's limit)`;
  let left = activities.map((_, i) => i);
  // A confirmed refusal of contacts' counters keeps the events each has room for and asks again
  // without the rest: once for all the counters the ledger found full, not once a counter.
  for (;;) {
    const inRequest = new Set<number>();
    const verdict = await attempt(counts, ledger, activities, left, settings, (position) => {
      inRequest.add(position);
      over.push({ position, message });
    });
    if (inRequest.size) left = left.filter((index) => !inRequest.has(index));
    if (verdict.ok) return { contacts: verdict.contacts, report: verdict.report, over: over.sort((x, y) => x.position - y.position) };
    const { refusal } = verdict;
    const people = refusal.full?.find((f) => !f.ask.activity);
    if (refusal.temporary || !refusal.full?.length || people) throw refusalOf(people ?? refusal, limit);
    // An event is refused when a counter it counts in has no room for it.
    const refused = new Map<string, Set<string>>();
    for (const { ask, over: members } of refusal.full) refused.set(ask.key, new Set(members));
    const next = left.filter((index) => {
      const a = activities[index] as ActivityInput;
      const member = memberOf(a);
      const keys = contactKeysOf(a).map((contact) => counterOf(contact, a));
      if (!keys.some((key) => refused.get(key)?.has(member))) return true;
      over.push({ position: index, message });
      return false;
    });
    // Every event is over: the request is refused as a whole, to come back when the limit frees.
    if (!next.length || next.length === left.length) throw refusalOf(verdict.refusal, limit);
    left = next;
  }
}

type LimitAsk = Ask & { index: number; activity?: string };

/** One try of `admit` with the activities at `positions`: admitted, with the log's contacts, or the refusal. */
async function attempt(
  counts: LimitCounts,
  ledger: LedgerPort,
  activities: ActivityInput[],
  positions: number[],
  settings: LimitSettings,
  overInRequest: (position: number) => void,
): Promise<{ ok: true; contacts: string[]; report: boolean } | { ok: false; refusal: Refusal }> {
  const limit = settings.contactActivityLimit;
  /** The request's ask of each contact's counter, made at the counter's first event and added to by the next. */
  const byCounter = new Map<string, LimitAsk>();
  // The request's distinct people: all of them for the people budget (open mode), else the first
  // LOGGED_PEOPLE for the log line.
  const people = new Set<string>();
  const counting = settings.people !== undefined;
  for (const index of positions) {
    const a = activities[index] as ActivityInput;
    const member = memberOf(a);
    const contacts = contactKeysOf(a);
    // Each contact's counter key, built once per event and looked up in the request's asks once.
    const keys: string[] = [];
    const asked: (LimitAsk | undefined)[] = [];
    // Over the limit within the request itself: a new event past a person's `limit`th of this
    // activity in the request (looked at only once a counter holds `limit` events: rare).
    let past = false;
    for (const contact of contacts) {
      const key = counterOf(contact, a);
      const ask = byCounter.get(key);
      keys.push(key);
      asked.push(ask);
      const members = ask?.members;
      if (members !== undefined && members.length >= limit && !members.includes(member) && new Set(members).size >= limit) past = true;
    }
    if (past) {
      overInRequest(index);
      continue;
    }
    for (let i = 0; i < contacts.length; i++) {
      if (counting || people.size < LOGGED_PEOPLE) people.add(contacts[i] as string);
      const ask = asked[i];
      if (ask) ask.members.push(member);
      else {
        const key = keys[i] as string;
        byCounter.set(key, { key, limit, window: DAY_MS, members: [member], index, activity: a.activity_id });
      }
    }
  }
  const asks = [...byCounter.values()];
  if (settings.people) {
    const { network, budget } = settings.people;
    if (people.size > budget) {
      throw new RelayError(
        400,
        `One request names ${people.size} people; a page may name at most ${budget} per hour (open mode)`,
        [
          {
            path: "activities",
            message: `expected at most ${budget} distinct people per client network per hour; servers send batches with SERVER_TOKEN`,
          },
        ],
        { reason: "people_budget" },
      );
    }
    asks.push({ key: `n:${network}`, limit: budget, window: HOUR_MS, members: [...people], index: 0 });
    // An IPv6 customer holds a /48 or a /56 as easily as a /64: its /48 shares a larger budget too.
    const wide = wideNetwork(network);
    if (wide) asks.push({ key: `n:${wide}`, limit: budget * WIDE_NETWORK_FACTOR, window: HOUR_MS, members: [...people], index: 0 });
  }

  const verdict = await counts.admit(ledger, asks);
  if (verdict.ok) return { ok: true, contacts: [...people], report: verdict.report };
  return {
    ok: false,
    refusal: {
      ask: verdict.ask as LimitAsk,
      retryAfterSeconds: verdict.retryAfterSeconds,
      temporary: verdict.temporary,
      full: verdict.full as Refusal["full"],
    },
  };
}

interface Refusal {
  ask: LimitAsk;
  retryAfterSeconds: number;
  temporary?: true;
  /** Every counter the ledger confirmed full, with the request's new members it has no room for. */
  full?: (Full & { ask: LimitAsk })[];
}

/** A request refused as a whole by its limits. */
function refusalOf({ ask, retryAfterSeconds, temporary }: Refusal, limit: number): RelayError {
  const headers = { "Retry-After": String(retryAfterSeconds) };
  if (temporary) {
    // Not a limit reached: the shared count could not be confirmed in time. Nothing was counted.
    return new RelayError(
      429,
      `The relay could not confirm this request against its limits just now; send it again in ${retryAfterSeconds} s`,
      [
        {
          path: ask.activity ? `activities.${ask.index}` : "activities",
          message: "expected to be confirmed against the shared count: try again in a moment",
        },
      ],
      { reason: ask.activity ? "contact_limit" : "people_budget", headers },
    );
  }
  if (!ask.activity) {
    return new RelayError(
      429,
      `This network has reached ${ask.limit} people in an hour (the relay's budget of people per client network in open mode)`,
      [{ path: "headers.cf-connecting-ip", message: `expected at most ${ask.limit} distinct people per client network per hour` }],
      { reason: "people_budget", headers },
    );
  }
  return new RelayError(
    429,
    `This person has reached ${limit} ${ask.activity} events in 24 hours (Ortto's limit per activity per contact)`,
    [{ path: `activities.${ask.index}.activity_id`, message: `expected at most ${limit} events per contact in 24 hours` }],
    { reason: "contact_limit", headers },
  );
}
