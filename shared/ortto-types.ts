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
  return realDate(d.year, d.month, d.day);
}
function realDate(year: number, month: number, day: number): boolean {
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
 * The hot path. Every kind also has a plain check, built once per isolate, that the relay runs
 * first: where it accepts a value, the zod schema above would accept it too, and give it back
 * unchanged (a property test, test/unit/fast-accept.test.ts, holds every check to that), so a
 * valid activity costs a few comparisons instead of zod's generic walk. Where it says no, or is
 * unsure, the zod schema runs and its issues are the answer. So the schemas above stay the one
 * definition of what is valid and of every error message; these only make the common case cheap.
 * Each check answers the most bytes the value's JSON can take (so that the activity's size bound
 * is summed in the same pass), or REFUSED.
 */

/** A hot-path check's answer for a value it does not accept (the schema decides). */
export const REFUSED = -1;
/** The most bytes a value's JSON can take in UTF-8, or REFUSED: the hot path's check of one kind. */
export type ValueBytes = (value: unknown) => number;

/** How deep a value may nest (a `json` attribute, a location): deeper would overflow recursive walks such as JSON.stringify. */
export const MAX_DEPTH = 32;

/**
 * An upper bound of a JSON value's UTF-8 size, without building the JSON: a character takes at
 * most 6 bytes in JSON (an escape), a number at most 25 characters (`-0.0000012345678901234567`:
 * 17 digits after "-0.00000"; the exponent form takes at most 24). Stops once over `budget`;
 * a value nested deeper than MAX_DEPTH (counting from `depth`) is unbounded here (the schema
 * names its field).
 */
export function jsonBytesAtMost(value: unknown, budget: number, depth = 0): number {
  if (typeof value === "string") return value.length * 6 + 2;
  if (typeof value !== "object" || value === null) return 25;
  if (depth > MAX_DEPTH) return Number.POSITIVE_INFINITY;
  let n = 2;
  if (Array.isArray(value)) {
    for (const item of value) {
      n += jsonBytesAtMost(item, budget, depth + 1) + 1;
      if (n > budget) return n;
    }
    return n;
  }
  for (const key in value) {
    n += key.length * 6 + 3 + jsonBytesAtMost((value as Record<string, unknown>)[key], budget, depth + 1) + 1;
    if (n > budget) return n;
  }
  return n;
}

/** A plain object (not an array, not null) whose keys are all in `allowed`. */
export function onlyKeys(value: unknown, allowed: ReadonlySet<string>): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  for (const key in value) if (!allowed.has(key)) return false;
  return true;
}

const textBytes =
  (max: number): ValueBytes =>
  (v) =>
    typeof v === "string" && v.length <= max ? v.length * 6 + 2 : REFUSED;
const integerBytes: ValueBytes = (v) => (Number.isSafeInteger(v) ? 24 : REFUSED);
const DATE_KEYS = new Set(["year", "month", "day", "timezone"]);
/** Zones a date may carry as written: known to ICU, in the spelling the schema forwards (both depend on the name only). */
const zonesAsWritten = new Set<string>();
function zoneAsWritten(zone: string): boolean {
  if (zonesAsWritten.has(zone)) return true;
  if (zone.length > MAX_ZONE_LENGTH || zoneAsForwarded(zone) !== zone || !isTimeZone(zone)) return false;
  // Bounded as canonicalTimeZone's cache is (only zones ICU knows get here).
  if (zonesAsWritten.size < 1000) zonesAsWritten.add(zone);
  return true;
}
const dateBytes: ValueBytes = (v) => {
  if (!onlyKeys(v, DATE_KEYS)) return REFUSED;
  const { year, month, day, timezone } = v as { year: number; month: number; day: number; timezone: unknown };
  // isRealDate holds the month and the day to their ranges, and all three to integers.
  if (!(year >= 1 && year <= 9999 && typeof timezone === "string" && zoneAsWritten(timezone) && realDate(year, month, day))) return REFUSED;
  // {"year":9999,"month":12,"day":31,"timezone":""}
  return 48 + timezone.length * 6;
};
const accepts = (schema: z.ZodMiniType, budget: number) => (v: unknown) =>
  schema.safeParse(v).success ? jsonBytesAtMost(v, budget, 2) : REFUSED;

const DATE_TIME = /^(\d{4})-(\d\d)-(\d\d)T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/;
/** `isoDateTime`'s rule, without zod: an ISO date and time with seconds and a zone, on a real calendar day. */
export function isDateTime(v: unknown): v is string {
  if (typeof v !== "string" || !DATE_TIME.test(v)) return false;
  // The pattern fixed the digits' places: read them without building the match's strings.
  return realDate(digits(v, 0, 4), digits(v, 5, 2), digits(v, 8, 2));
}
/** The number written by `length` ASCII digits of `v` from `at`. */
function digits(v: string, at: number, length: number): number {
  let n = 0;
  for (let i = at; i < at + length; i++) n = n * 10 + v.charCodeAt(i) - 48;
  return n;
}
const DAY_MS = 86_400_000;
/** Days from 1970-01-01 to a day of the proleptic Gregorian calendar (as Date counts them), year ≥ 0. */
function daysFromEpoch(year: number, month: number, day: number): number {
  // Years that start in March, so that a leap day ends its year: 400 years are 146,097 days.
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  return era * 146_097 + yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear - 719_468;
}
/**
 * The time of a string `isDateTime` accepts, in ms, as `Date.parse` reads it (a fraction cut to
 * whole ms), from the digits the pattern placed: without the parser's general grammar.
 */
export function dateTimeMs(v: string): number {
  let ms = 0;
  if (v.charCodeAt(19) === 46)
    for (let i = 20, unit = 100; unit >= 1; i++, unit /= 10) {
      const d = v.charCodeAt(i) - 48;
      if (!(d >= 0 && d <= 9)) break;
      ms += d * unit;
    }
  const end = v.length;
  // Z, or the offset's sign (+ is 43, - is 45) and its minutes.
  const offset = v.charCodeAt(end - 1) === 90 ? 0 : (44 - v.charCodeAt(end - 6)) * (digits(v, end - 5, 2) * 60 + digits(v, end - 2, 2));
  const minutes = digits(v, 11, 2) * 60 + digits(v, 14, 2) - offset;
  return daysFromEpoch(digits(v, 0, 4), digits(v, 5, 2), digits(v, 8, 2)) * DAY_MS + minutes * 60_000 + digits(v, 17, 2) * 1000 + ms;
}
const dateTimeBytes: ValueBytes = (v) => (isDateTime(v) ? v.length + 2 : REFUSED);

/**
 * A URL that the WHATWG parser takes and that the `url` schema gives back as written: an http(s)
 * scheme, a host of letters, digits and hyphens whose last label starts with a letter (so not
 * an IPv4 address) and none is punycode (`xn--`, which the parser decodes and may refuse), a port
 * under 10,000, then anything without white space (the parser fails on nothing after the host;
 * the schema trims white space and drops tabs and newlines).
 */
const PLAIN_URL = /^https?:\/\/(?:(?![Xx][Nn]--)[A-Za-z0-9-]+\.)*(?![Xx][Nn]--)[A-Za-z][A-Za-z0-9-]*(?::\d{1,4})?(?:[/?#]\S*)?$/;
/** Another URL the schema gives back as written: a lower-case http(s) scheme, no white space at either end, no tab nor newline. */
const AS_WRITTEN = /^https?:\/\/(?:\S|\S[^\t\n\r]*\S)$/;
/** `url`'s rule, a little narrower: at most 255 characters, and a plain URL, else one the runtime can parse. */
const urlBytes: ValueBytes = (v) =>
  typeof v === "string" && v.length <= MAX_TEXT && (PLAIN_URL.test(v) || (AS_WRITTEN.test(v) && URL.canParse(v)))
    ? v.length * 6 + 2
    : REFUSED;
const listBytes = (v: unknown, allowed?: ReadonlySet<string>): number => {
  if (!Array.isArray(v) || v.length > MAX_LIST_ITEMS) return REFUSED;
  let n = 2;
  for (const item of v) {
    if (typeof item !== "string" || item.length > MAX_TEXT || (allowed && !allowed.has(item))) return REFUSED;
    n += item.length * 6 + 3;
  }
  return n;
};

/**
 * The hot path's check of one declared kind: REFUSED for any value `valueSchema(kind, options)`
 * refuses or would change, else the most bytes of its JSON (`budget`: a json value's walk stops
 * beyond it).
 */
export function valueBytes(kind: FieldKind, options?: readonly string[], budget = Number.POSITIVE_INFINITY): ValueBytes {
  const allowed = options?.length ? new Set(options) : undefined;
  switch (kind) {
    case "text":
      return textBytes(MAX_TEXT);
    case "long_text":
      return textBytes(MAX_LONG_TEXT);
    case "integer":
    case "decimal":
    case "currency":
      return integerBytes;
    case "boolean":
      return (v) => (typeof v === "boolean" ? 5 : REFUSED);
    case "date":
      return dateBytes;
    case "single_select":
      return (v) => (typeof v === "string" && v.length <= MAX_TEXT && (!allowed || allowed.has(v)) ? v.length * 6 + 2 : REFUSED);
    case "multi_select":
      return (v) => listBytes(v, allowed);
    case "json":
      // An own `__proto__` key (JSON.parse makes one) is data here, forwarded as written. Its
      // nesting counted as an attribute's (the activity, its attributes, then the value).
      return (v) =>
        typeof v === "object" && v !== null && (Array.isArray(v) || Object.getPrototypeOf(v) === Object.prototype)
          ? jsonBytesAtMost(v, budget, 2)
          : REFUSED;
    case "datetime":
      return dateTimeBytes;
    case "url":
      return urlBytes;
    case "email":
      return (v) => (typeof v === "string" && v.length <= MAX_TEXT && EMAIL.test(v.trim()) ? v.length * 6 + 2 : REFUSED);
    default:
      // The rarer kinds (phone, place) ask their own schema: still far cheaper than walking the
      // whole request through zod.
      return accepts(valueSchema(kind, options), budget);
  }
}

/** The hot path's check of one declared kind as a predicate: true only for values `valueSchema(kind, options)` accepts unchanged. */
export function valueCheck(kind: FieldKind, options?: readonly string[]): (value: unknown) => boolean {
  const bytes = valueBytes(kind, options);
  return (v) => bytes(v) !== REFUSED;
}
