/**
 * The relay's two counting limits, asked of the ledger together so a request waits at most once:
 * - Ortto's 50 events per activity per contact per 24 h, for every identifier an activity
 *   carries (rotating the email while keeping a victim's external id does not escape it);
 * - in open mode, at most a budget of distinct people per client network per hour, so a
 *   stranger cannot mint people (each opted in to email) in bulk.
 */
import type { ActivityInput } from "../../shared/activities.ts";
import { RelayError } from "../errors.ts";
import { contactKey, identifiersOf } from "../identifiers.ts";
import type { Ask, LedgerPort, LimitCounts } from "./counts.ts";
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

/**
 * Counts a request's (already keyed) activities against its limits: all of them, or none. A
 * request that alone holds more than a limit can never pass, so it is a 400, not a 429 to retry.
 * Returns the first LOGGED_PEOPLE contacts (kind and normalised value) for the request's log, which hashes them, and
 * whether the ledger is due a report (after the answer: `flushSoon`).
 */
export async function takeLimits(
  counts: LimitCounts,
  ledger: LedgerPort,
  activities: ActivityInput[],
  settings: LimitSettings,
): Promise<{ contacts: string[]; report: boolean }> {
  const limit = settings.contactActivityLimit;
  const byCounter = new Map<string, { index: number; activity: string; members: string[] }>();
  // The request's distinct people: all of them for the people budget (open mode), else the first
  // LOGGED_PEOPLE for the log line.
  const people = new Set<string>();
  const counting = settings.people !== undefined;
  for (let index = 0; index < activities.length; index++) {
    const a = activities[index] as ActivityInput;
    const member = `${a.key}|${a.created}`;
    for (const identifier of identifiersOf(a)) {
      const contact = contactKey(identifier);
      if (counting || people.size < LOGGED_PEOPLE) people.add(contact);
      const key = `${contact}|${a.activity_id}`;
      const counter = byCounter.get(key);
      if (!counter) {
        byCounter.set(key, { index, activity: a.activity_id, members: [member] });
        continue;
      }
      counter.members.push(member);
      if (counter.members.length > limit && new Set(counter.members).size > limit) {
        throw new RelayError(
          400,
          `One request holds more than ${limit} ${a.activity_id} events for one person (Ortto's limit per day)`,
          [{ path: `activities.${index}`, message: `expected at most ${limit} events per activity per contact in 24 hours` }],
          { reason: "contact_limit" },
        );
      }
    }
  }
  const asks: (Ask & { index: number; activity?: string })[] = [...byCounter].map(([key, c]) => ({
    key,
    limit,
    window: DAY_MS,
    members: c.members,
    index: c.index,
    activity: c.activity,
  }));
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
  if (verdict.ok) return { contacts: [...people], report: verdict.report };
  const ask = verdict.ask as (typeof asks)[number];
  const headers = { "Retry-After": String(verdict.retryAfterSeconds) };
  if (verdict.temporary) {
    // Not a limit reached: the shared count could not be confirmed in time. Nothing was counted.
    throw new RelayError(
      429,
      `The relay could not confirm this request against its limits just now; send it again in ${verdict.retryAfterSeconds} s`,
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
    throw new RelayError(
      429,
      `This network has reached ${ask.limit} people in an hour (the relay's budget of people per client network in open mode)`,
      [{ path: "headers.cf-connecting-ip", message: `expected at most ${ask.limit} distinct people per client network per hour` }],
      { reason: "people_budget", headers },
    );
  }
  throw new RelayError(
    429,
    `This person has reached ${limit} ${ask.activity} events in 24 hours (Ortto's limit per activity per contact)`,
    [{ path: `activities.${ask.index}.activity_id`, message: `expected at most ${limit} events per contact in 24 hours` }],
    { reason: "contact_limit", headers },
  );
}
