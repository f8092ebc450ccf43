/**
 * One validator per Ortto field kind: the JSON shape Ortto unmarshals each type into.
 * Ortto is strongly typed ("if you provide a type of data which cannot be unmarshaled into
 * the correct type, your activity ingestion will fail"), so the relay checks every value
 * here instead of letting Ortto fail (and count a bad request against the relay's IP).
 *
 * Built on `zod/mini` so the worker bundle carries only the checks it uses; every check
 * states its own message, in the words a developer reading a 400 needs.
 */
import * as z from "zod/mini";
import type { FieldKind } from "./field-ids.ts";

/** Ortto caps `str` at 255 characters and long text at 4,000. */
export const MAX_TEXT = 255;
export const MAX_LONG_TEXT = 4000;
/** Bounds of our own, so that nothing unbounded reaches Ortto. */
export const MAX_LIST_ITEMS = 100;

const text = (max: number) => z.string({ error: "expected a string" }).check(z.maxLength(max, `expected at most ${max} characters`));

const integer = z
  .int({ error: "expected an integer" })
  .check(z.refine(Number.isSafeInteger, "expected a safe integer (decimals and currency are sent × 1000)"));

/** Zones already resolved: building an Intl.DateTimeFormat costs ~100 µs, a lookup nothing. Bounded in entries and key length, so junk zones cannot grow it. */
const zones = new Map<string, string | null>();
/** The longest zone name the relay takes (the tz database's longest is 32 characters). */
export const MAX_ZONE_LENGTH = 64;

/**
 * The IANA name of a time zone in the spelling of the tz database (`australia/sydney` →
 * `Australia/Sydney`, `utc` → `UTC`; an alias becomes the name ICU keeps for it, also in the
 * database), or undefined for anything else. `Intl` alone is lenient: it takes any case and
 * UTC offsets (`+05:30`), which are not zone names and which Ortto need not take.
 */
export function canonicalTimeZone(zone: string): string | undefined {
  // Never resolved nor cached: no zone name is this long, and a refused request must not grow the heap.
  if (zone.length > MAX_ZONE_LENGTH) return undefined;
  let canonical = zones.get(zone);
  if (canonical === undefined) {
    canonical = null;
    // Zone names start with a letter; offsets (`+05:30`, `-0800`) do not.
    if (/^[A-Za-z]/.test(zone)) {
      try {
        const resolved = new Intl.DateTimeFormat("en", { timeZone: zone }).resolvedOptions().timeZone;
        if (/^[A-Za-z]/.test(resolved)) canonical = resolved;
      } catch {
        // not a zone this runtime's ICU knows
      }
    }
    if (zones.size < 1000) zones.set(zone, canonical);
  }
  return canonical ?? undefined;
}

/** An IANA zone that this runtime's ICU knows (`Australia/Sydney`, `UTC`), in any spelling; not a UTC offset. */
export function isTimeZone(zone: string): boolean {
  return canonicalTimeZone(zone) !== undefined;
}

/** The shape of a tz database name's case: each part starts with a capital (`Asia/Kolkata`, `US/Eastern`, `Etc/GMT+5`, `EST`). */
const TZ_CASE = /^[A-Z][^/]*(\/[A-Z][^/]*)*$/;

/**
 * The spelling a zone reaches Ortto in: as written (`Asia/Kolkata` stays `Asia/Kolkata`, not ICU's
 * `Asia/Calcutta`), except that a name differing from ICU's only by case takes ICU's case
 * (`australia/sydney` → `Australia/Sydney`), as the tz database's names are case-sensitive. An
 * alias in a case the database cannot have (`asia/kolkata`, `US/EASTERN`), whose right case ICU
 * does not know, becomes ICU's name for it (`Asia/Calcutta`), also a name of the database.
 */
export function zoneAsForwarded(zone: string): string {
  const canonical = canonicalTimeZone(zone);
  if (canonical === undefined) return zone;
  if (canonical.toLowerCase() === zone.toLowerCase()) return canonical;
  return TZ_CASE.test(zone) && !(zone.includes("/") && zone === zone.toUpperCase()) ? zone : canonical;
}

export function isRealDate(d: { year: number; month: number; day: number }): boolean {
  const { year, month, day } = d;
  if (!(month >= 1 && month <= 12 && day >= 1 && Number.isInteger(year) && Number.isInteger(month) && Number.isInteger(day))) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return day <= (month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31);
}

const date = z.pipe(
  z
    .strictObject(
      {
        year: z.int({ error: "expected an integer year" }).check(z.gte(1, "expected a year ≥ 1"), z.lte(9999, "expected a year ≤ 9999")),
        month: z.int({ error: "expected an integer month" }).check(z.gte(1, "expected a month 1–12"), z.lte(12, "expected a month 1–12")),
        day: z.int({ error: "expected an integer day" }).check(z.gte(1, "expected a day 1–31"), z.lte(31, "expected a day 1–31")),
        timezone: z.string({ error: "expected an IANA time zone such as Australia/Sydney" }).check(
          z.maxLength(MAX_ZONE_LENGTH, "expected an IANA time zone such as Australia/Sydney"),
          // isTimeZone also bounds the length: zod runs this refinement even after maxLength failed.
          z.refine(isTimeZone, "expected an IANA time zone such as Australia/Sydney (not a UTC offset)"),
        ),
      },
      { error: "expected a date {year, month, day, timezone}" },
    )
    .check(z.refine(isRealDate, "expected a real calendar date")),
  // Forwarded as written (an alias stays the alias), in the tz database's case.
  z.transform((d) => ({ ...d, timezone: zoneAsForwarded(d.timezone) })),
);

/** ISO 8601 with a time and a zone offset (`2026-11-27T06:56:33Z`, `…+11:00`). */
export const isoDateTime = z.iso.datetime({
  offset: true,
  error: "expected an ISO 8601 date and time with a zone, such as 2026-11-27T06:56:33Z",
});

const phone = z.union(
  [
    z.strictObject({
      c: z.string().check(z.regex(/^\d{1,4}$/, "expected a country calling code of 1–4 digits")),
      n: z.string().check(z.regex(/^\d{3,15}$/, "expected a national number of 3–15 digits")),
    }),
    z.strictObject({
      phone: z.string().check(z.regex(/^\+?\d{6,18}$/, "expected a phone number of 6–18 digits")),
      parse_with_country_code: z.optional(z.boolean()),
    }),
  ],
  { error: 'expected a phone {"c":"61","n":"401234567"} or {"phone":"61401234567","parse_with_country_code":true}' },
);

const place = z.strictObject({ name: text(MAX_TEXT) }, { error: 'expected a place {"name": "Sydney"}' });

const list = z
  .array(text(MAX_TEXT), { error: "expected an array of strings" })
  .check(z.maxLength(MAX_LIST_ITEMS, `expected at most ${MAX_LIST_ITEMS} values`));

/** Checked, never rebuilt: a record would rebuild the object by assignment and drop an own `__proto__` key, which is forwarded as written. */
const json = z.custom<Record<string, unknown> | unknown[]>(
  (v) => typeof v === "object" && v !== null && (Array.isArray(v) || Object.getPrototypeOf(v) === Object.prototype),
  { error: "expected a JSON object or array" },
);

const url = z
  .string({ error: "expected a URL string" })
  .check(
    z.maxLength(MAX_TEXT, `expected at most ${MAX_TEXT} characters`),
    z.url({ protocol: /^https?$/, error: "expected an http(s) URL" }),
  );

const emailFormat = z.email();
/** zod's own email pattern (zod/v4/core/regexes.ts `email`), for the hot path's predicate; a property test holds the two together. */
const EMAIL = /^(?:[A-Za-z0-9_'+-]+\.)*[A-Za-z0-9_'+-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9-]*\.)+[A-Za-z]{2,}$/;
/** Spaces around an address are a typing slip, not a different address: accepted here, trimmed by the relay before Ortto. */
const email = z.string({ error: "expected an email address" }).check(
  z.maxLength(MAX_TEXT, `expected at most ${MAX_TEXT} characters`),
  z.refine((v) => emailFormat.safeParse(v.trim()).success, "expected an email address"),
);

function selectOf(options: readonly string[] | undefined) {
  if (!options?.length) return text(MAX_TEXT);
  const allowed = new Set(options);
  return text(MAX_TEXT).check(z.refine((v) => allowed.has(v), `expected one of: ${options.join(", ")}`));
}

function multiSelectOf(options: readonly string[] | undefined) {
  if (!options?.length) return list;
  const allowed = new Set(options);
  return list.check(z.refine((vs) => vs.every((v) => allowed.has(v)), `expected values from: ${options.join(", ")}`));
}

/** The validator of one declared kind; selects may narrow to their options. */
export function valueSchema(kind: FieldKind, options?: readonly string[]): z.ZodMiniType {
  switch (kind) {
    case "text":
      return text(MAX_TEXT);
    case "long_text":
      return text(MAX_LONG_TEXT);
    case "integer":
    case "decimal":
    case "currency":
      return integer;
    case "boolean":
      return z.boolean({ error: "expected a boolean" });
    case "date":
      return date;
    case "datetime":
      return isoDateTime;
    case "phone":
      return phone;
    case "place":
      return place;
    case "url":
      return url;
    case "email":
      return email;
    case "single_select":
      return selectOf(options);
    case "multi_select":
      return multiSelectOf(options);
    case "json":
      return json;
  }
}

/*
 * The hot path. Every kind also has a plain predicate, built once per isolate, that the relay runs
 * first: where it says yes, the zod schema above would say yes too, and give the value back
 * unchanged (a property test,
 * test/unit/fast-accept.test.ts, holds every predicate to that), so a valid activity costs a few
 * comparisons instead of zod's generic walk. Where it says no, or is unsure, the zod schema runs
 * and its issues are the answer. So the schemas above stay the one definition of what is valid
 * and of every error message; these only make the common case cheap.
 */

/** A plain object (not an array, not null) whose keys are all in `allowed`. */
export function onlyKeys(value: unknown, allowed: ReadonlySet<string>): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  for (const key in value) if (!allowed.has(key)) return false;
  return true;
}

const isText = (max: number) => (v: unknown) => typeof v === "string" && v.length <= max;
const isInteger = (v: unknown) => Number.isSafeInteger(v);
const DATE_KEYS = new Set(["year", "month", "day", "timezone"]);
const isDate = (v: unknown) => {
  if (!onlyKeys(v, DATE_KEYS)) return false;
  const { year, month, day, timezone } = v as { year: number; month: number; day: number; timezone: unknown };
  return (
    Number.isSafeInteger(year) &&
    year >= 1 &&
    year <= 9999 &&
    Number.isSafeInteger(month) &&
    month >= 1 &&
    month <= 12 &&
    Number.isSafeInteger(day) &&
    day >= 1 &&
    day <= 31 &&
    typeof timezone === "string" &&
    timezone.length <= MAX_ZONE_LENGTH &&
    // A known zone in the spelling the schema would forward unchanged.
    zoneAsForwarded(timezone) === timezone &&
    isTimeZone(timezone) &&
    isRealDate({ year, month, day })
  );
};
const accepts = (schema: z.ZodMiniType) => (v: unknown) => schema.safeParse(v).success;

const DATE_TIME = /^(\d{4})-(\d\d)-(\d\d)T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/;
/** `isoDateTime`'s rule, without zod: an ISO date and time with seconds and a zone, on a real calendar day. */
export function isDateTime(v: unknown): v is string {
  if (typeof v !== "string" || !DATE_TIME.test(v)) return false;
  // The pattern fixed the digits' places: read them without building the match's strings.
  const digit = (i: number) => v.charCodeAt(i) - 48;
  return isRealDate({
    year: digit(0) * 1000 + digit(1) * 100 + digit(2) * 10 + digit(3),
    month: digit(5) * 10 + digit(6),
    day: digit(8) * 10 + digit(9),
  });
}
/** `url`'s rule, a little narrower: a lower-case http(s) scheme, at most 255 characters, and a URL the runtime can parse. */
const isHttpUrl = (v: unknown) => typeof v === "string" && v.length <= MAX_TEXT && /^https?:\/\//.test(v) && URL.canParse(v);
const isList = (v: unknown): v is string[] => Array.isArray(v) && v.length <= MAX_LIST_ITEMS && v.every(isText(MAX_TEXT));

/** The predicate of one declared kind: true only for values `valueSchema(kind, options)` accepts. */
export function valueCheck(kind: FieldKind, options?: readonly string[]): (value: unknown) => boolean {
  const allowed = options?.length ? new Set(options) : undefined;
  switch (kind) {
    case "text":
      return isText(MAX_TEXT);
    case "long_text":
      return isText(MAX_LONG_TEXT);
    case "integer":
    case "decimal":
    case "currency":
      return isInteger;
    case "boolean":
      return (v) => typeof v === "boolean";
    case "date":
      return isDate;
    case "single_select":
      return (v) => typeof v === "string" && v.length <= MAX_TEXT && (!allowed || allowed.has(v));
    case "multi_select":
      return (v) => isList(v) && (!allowed || v.every((x) => allowed.has(x)));
    case "json":
      // An own `__proto__` key (JSON.parse makes one) is data here, forwarded as written.
      return (v) => typeof v === "object" && v !== null && (Array.isArray(v) || Object.getPrototypeOf(v) === Object.prototype);
    case "datetime":
      return isDateTime;
    case "url":
      return isHttpUrl;
    case "email":
      return (v) => typeof v === "string" && v.length <= MAX_TEXT && EMAIL.test(v.trim());
    default:
      // The rarer kinds (phone, place) ask their own schema: still far cheaper than walking the
      // whole request through zod.
      return accepts(valueSchema(kind, options));
  }
}
