/**
 * Ortto's field ids: `type::name` for built-in fields, `type:cm:name` for custom ones,
 * and `act:cm:<slug>` for custom activities. The type prefix fixes the JSON value's shape.
 */

/** Every type prefix the activities API accepts, with the JSON shape it takes. */
export const FIELD_PREFIXES = ["str", "txt", "int", "bol", "dtz", "tme", "phn", "geo", "sst", "obj"] as const;
export type FieldPrefix = (typeof FIELD_PREFIXES)[number];

/**
 * What an operator declares an attribute or person field to be, in the words of Ortto's
 * "new activity" screen. Several kinds share one prefix (decimals and currency travel as
 * `int` × 1000; URL, email and single select travel as `str`).
 */
export const FIELD_KINDS = {
  text: "str",
  long_text: "txt",
  integer: "int",
  decimal: "int",
  currency: "int",
  date: "dtz",
  datetime: "tme",
  boolean: "bol",
  phone: "phn",
  url: "str",
  email: "str",
  single_select: "str",
  multi_select: "sst",
  json: "obj",
  place: "geo",
} as const satisfies Record<string, FieldPrefix>;
export type FieldKind = keyof typeof FIELD_KINDS;

/** `str:cm:payment-plan`, `int::v`, `phn::phone` … (lower-case slug after the last colon). */
export const FIELD_ID = /^(str|txt|int|bol|dtz|tme|phn|geo|sst|obj):(cm)?:[a-z0-9][a-z0-9-]{0,99}$/;
/** `act:cm:logged-in`. */
export const ACTIVITY_ID = /^act:cm:[a-z0-9][a-z0-9-]{0,99}$/;

/** The type prefix of a field id (`str:cm:plan` → `str`), or undefined when it is not a field id. */
export function prefixOf(fieldId: string): FieldPrefix | undefined {
  return FIELD_ID.test(fieldId) ? (fieldId.slice(0, 3) as FieldPrefix) : undefined;
}

/**
 * Person fields that identify a person for merging; an activity must carry one of them
 * (or a `person_id`) or Ortto cannot attach it to anyone.
 */
export const IDENTIFYING_FIELDS = ["str::email", "str::ei", "phn::phone"] as const;

/** Ortto's built-in person fields and their kinds. */
export const BUILT_IN_PERSON_FIELDS = {
  "str::first": "text",
  "str::last": "text",
  "str::email": "email",
  "str::ei": "text",
  "phn::phone": "phone",
  "geo::city": "place",
  "geo::country": "place",
  "geo::region": "place",
  "str::postal": "text",
  "str::language": "text",
  "dtz::b": "date",
} as const satisfies Record<string, FieldKind>;

/**
 * Subscription (consent) fields. A page must not be able to unsubscribe or re-subscribe
 * someone, so these are never browser-settable unless the catalogue opts in explicitly.
 */
export const CONSENT_FIELDS = {
  "bol::p": "boolean",
  "str::s-ctx": "text",
  "str::u-ctx": "text",
  "bol::sp": "boolean",
  "bol::gdpr": "boolean",
} as const satisfies Record<string, FieldKind>;
