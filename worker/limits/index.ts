import type { ActivityInput } from "../../shared/activities.ts";
import type { RelayEnv } from "../env.ts";
import { RelayError } from "../errors.ts";
import { contactKey, identifiersOf } from "../identifiers.ts";
import type { ContactActivityLimiter, CountedEvent } from "./contact-limiter.ts";

/**
 * Every identifier an activity carries: Ortto may merge by any of them, so each is a contact
 * the activity counts against (rotating the email while keeping a victim's external id must
 * not escape the limit).
 */
const contactsOf = (activity: ActivityInput): string[] => identifiersOf(activity).map(contactKey);

async function sha256(value: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Counts a request's activities (already keyed) against each contact's daily limit per
 * activity. All or nothing: if any contact is over for any activity, what was counted for the
 * others is given back and the request is refused with 429 and the time the window frees up.
 * A request that alone holds more than the limit for one contact and activity can never pass,
 * so it is a 400, not a 429 to retry. Returns the contacts' SHA-256 hashes (all the log shows
 * of who sent what).
 */
export async function takeContactLimits(env: RelayEnv, activities: ActivityInput[], limit: number): Promise<string[]> {
  const byContact = new Map<string, CountedEvent[]>();
  for (const [index, a] of activities.entries()) {
    for (const contact of contactsOf(a)) {
      const events = byContact.get(contact) ?? [];
      events.push({ activity_id: a.activity_id, event: `${a.key}|${a.created}` });
      if (events.filter((e) => e.activity_id === a.activity_id).length > limit) {
        throw new RelayError(400, `One request holds more than ${limit} ${a.activity_id} events for one person (Ortto's limit per day)`, [
          { path: `activities.${index}`, message: `expected at most ${limit} events per activity per contact in 24 hours` },
        ]);
      }
      byContact.set(contact, events);
    }
  }
  const stubs = await Promise.all(
    [...byContact.entries()].map(async ([contact, events]) => {
      const hash = await sha256(contact);
      return {
        contact,
        hash,
        events,
        stub: env.CONTACT_LIMITER.get(env.CONTACT_LIMITER.idFromName(hash)) as DurableObjectStub<ContactActivityLimiter>,
      };
    }),
  );
  const results = await Promise.all(stubs.map(({ stub, events }) => stub.take(events, limit)));
  const refused = results.findIndex((r) => !r.ok);
  if (refused === -1) return stubs.map((s) => s.hash);
  await Promise.all(stubs.map(({ stub, events }, i) => (results[i]?.ok ? stub.refund(events) : undefined)));
  const result = results[refused] as Extract<(typeof results)[number], { ok: false }>;
  const contact = stubs[refused]?.contact ?? "";
  const index = Math.max(
    0,
    activities.findIndex((a) => a.activity_id === result.activity_id && contactsOf(a).includes(contact)),
  );
  throw new RelayError(
    429,
    `This person has reached ${limit} ${result.activity_id} events in 24 hours (Ortto's limit per activity per contact)`,
    [{ path: `activities.${index}.activity_id`, message: `expected at most ${limit} events per contact in 24 hours` }],
    { "Retry-After": String(result.retryAfterSeconds) },
  );
}
