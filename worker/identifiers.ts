/**
 * The identifiers an activity names its person by, normalised the way Ortto matches them, in
 * one place: the per-contact limit, the people budget, signed identities and the log's hashes
 * all read them from here, so `"v"`, `"v "` and `" v"` (one person upstream) are one contact
 * everywhere.
 */
import type { ActivityInput } from "../shared/activities.ts";

/** Every way an activity can point at a person; Ortto may merge by any of them. */
export const IDENTIFIER_KINDS = ["str::email", "str::ei", "person_id", "phn::phone"] as const;
export type IdentifierKind = (typeof IDENTIFIER_KINDS)[number];

export interface Identifier {
  kind: IdentifierKind;
  /** The value as Ortto matches it: an email trimmed and lower-cased, an external id trimmed, a person id lower-cased, a phone's digits. */
  value: string;
}

/** One letter per kind, for compact, unambiguous contact keys (`e:chris@example.com`). */
const LETTER: Record<IdentifierKind, string> = { "str::email": "e", "str::ei": "x", person_id: "p", "phn::phone": "t" };

/** The normalised value of one identifier, or undefined when it is absent or empty once normalised. */
export function normaliseIdentifier(kind: IdentifierKind, raw: unknown): string | undefined {
  let value: string | undefined;
  if (kind === "phn::phone") {
    const phone = raw as { c?: unknown; n?: unknown; phone?: unknown } | undefined;
    if (phone && typeof phone === "object") value = `${phone.c ?? ""}${phone.n ?? ""}${phone.phone ?? ""}`.replace(/\D/g, "");
  } else if (typeof raw === "string") {
    value = kind === "str::ei" ? raw.trim() : raw.trim().toLowerCase();
  }
  return value || undefined;
}

/** The identifiers an activity carries, normalised, in IDENTIFIER_KINDS order. */
export function identifiersOf(activity: ActivityInput): Identifier[] {
  const found: Identifier[] = [];
  for (const kind of IDENTIFIER_KINDS) {
    const value = normaliseIdentifier(kind, kind === "person_id" ? activity.person_id : activity.fields?.[kind]);
    if (value !== undefined) found.push({ kind, value });
  }
  return found;
}

/** A contact's key: its kind's letter and its normalised value (hashed before it is stored or logged). */
export const contactKey = ({ kind, value }: Identifier) => `${LETTER[kind]}:${value}`;

/**
 * The contact keys of the identifiers an activity carries: `identifiersOf(activity).map(contactKey)`
 * without an object per identifier (the limits build them for every event of a request).
 */
export function contactKeysOf(activity: ActivityInput): string[] {
  const keys: string[] = [];
  const fields = activity.fields;
  for (const kind of IDENTIFIER_KINDS) {
    const value = normaliseIdentifier(kind, kind === "person_id" ? activity.person_id : fields?.[kind]);
    if (value !== undefined) keys.push(`${LETTER[kind]}:${value}`);
  }
  return keys;
}
