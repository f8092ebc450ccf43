import type { ActivityInput } from "../../shared/activities.ts";
import type { RelayEnv } from "../env.ts";
import { RelayError } from "../errors.ts";
import type { ContactActivityLimiter } from "./contact-limiter.ts";

/** The contact an activity counts against: the same identifying value Ortto merges by. */
function contactOf(activity: ActivityInput): string | undefined {
  const f = activity.fields ?? {};
  if (typeof f["str::email"] === "string") return `e:${f["str::email"].trim().toLowerCase()}`;
  if (typeof f["str::ei"] === "string") return `x:${f["str::ei"]}`;
  if (activity.person_id) return `p:${activity.person_id}`;
  const phone = f["phn::phone"] as { c?: string; n?: string; phone?: string } | undefined;
  if (phone) return `t:${`${phone.c ?? ""}${phone.n ?? ""}${phone.phone ?? ""}`.replace(/\D/g, "")}`;
  return undefined;
}

async function sha256(value: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Counts a request's activities against each contact's daily limit per activity. All or
 * nothing: if any contact is over for any activity, what was taken for the others is given
 * back and the request is refused with 429 and the time the window frees up.
 * Returns the contacts' SHA-256 hashes (what the log line may show of who sent what).
 */
export async function takeContactLimits(env: RelayEnv, activities: ActivityInput[], limit: number): Promise<string[]> {
  const byContact = new Map<string, { counts: Record<string, number> }>();
  for (const a of activities) {
    const contact = contactOf(a);
    if (!contact) continue;
    const entry = byContact.get(contact) ?? { counts: {} };
    entry.counts[a.activity_id] = (entry.counts[a.activity_id] ?? 0) + 1;
    byContact.set(contact, entry);
  }
  const stubs = await Promise.all(
    [...byContact.entries()].map(async ([contact, entry]) => {
      const hash = await sha256(contact);
      return {
        contact,
        hash,
        entry,
        stub: env.CONTACT_LIMITER.get(env.CONTACT_LIMITER.idFromName(hash)) as DurableObjectStub<ContactActivityLimiter>,
      };
    }),
  );
  const results = await Promise.all(stubs.map(({ stub, entry }) => stub.take(entry.counts, limit)));
  const refused = results.findIndex((r) => !r.ok);
  if (refused === -1) return stubs.map((s) => s.hash);
  await Promise.all(stubs.map(({ stub, entry }, i) => (results[i]?.ok ? stub.refund(entry.counts) : undefined)));
  const result = results[refused] as Extract<(typeof results)[number], { ok: false }>;
  const contact = stubs[refused]?.contact;
  const index = Math.max(
    0,
    activities.findIndex((a) => a.activity_id === result.activity_id && contactOf(a) === contact),
  );
  throw new RelayError(
    429,
    `This person has reached ${limit} ${result.activity_id} events in 24 hours (Ortto's limit per activity per contact)`,
    [{ path: `activities.${index}.activity_id`, message: `expected at most ${limit} events per contact in 24 hours` }],
    { "Retry-After": String(result.retryAfterSeconds) },
  );
}
