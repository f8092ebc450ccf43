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

/**
 * Friendly names of Ortto's built-in person fields, which the page may use instead of the ids
 * (`email`, `first` … are also the snippet's shorthands). A custom field is named after its slug.
 */
export const BUILT_IN_NAMES: Readonly<Record<string, string>> = {
  "str::first": "first",
  "str::last": "last",
  "str::email": "email",
  "str::ei": "ei",
  "phn::phone": "phone",
  "geo::city": "city",
  "geo::country": "country",
  "geo::region": "region",
  "str::postal": "postal",
  "str::language": "language",
  "dtz::b": "birthday",
  "int::v": "conversionValue",
};

/** What a friendly name may be: a plain identifier, so it reads well in code and never looks like an Ortto id. */
export const FRIENDLY_NAME = /^[A-Za-z][A-Za-z0-9_]{0,99}$/;

/**
 * The default friendly name of an attribute or person field: the camelCase of its id's last part
 * (`str:cm:payment-plan` → `paymentPlan`), or a built-in's own (`int::v` → `conversionValue`).
 */
export function friendlyName(fieldId: string): string {
  const builtIn = BUILT_IN_NAMES[fieldId];
  if (builtIn !== undefined && Object.hasOwn(BUILT_IN_NAMES, fieldId)) return builtIn;
  const slug = fieldId.slice(fieldId.lastIndexOf(":") + 1);
  return slug.replace(/-+([a-z0-9])/g, (_, c: string) => c.toUpperCase()).replace(/-/g, "");
}

/**
 * How Ortto's display templates name an attribute (`{{attribute.payment_plan}}`): its name in
 * lower case with spaces as underscores. The relay knows the id, whose slug Ortto made from that
 * name, so `str:cm:payment-plan` → `payment_plan`; the conversion value is `conversion_value`.
 */
export function templateName(fieldId: string): string {
  if (fieldId === "int::v") return "conversion_value";
  return fieldId.slice(fieldId.lastIndexOf(":") + 1).replace(/-/g, "_");
}

/** `act:cm:logged-in` → `logged-in`, the short form a page may track by. */
export function activitySlug(activityId: string): string {
  return activityId.slice(activityId.lastIndexOf(":") + 1);
}
