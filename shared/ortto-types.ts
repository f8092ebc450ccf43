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

/** Zones already resolved: building an Intl.DateTimeFormat costs ~100 µs, a lookup nothing. Bounded, so junk zones cannot grow it. */
const zones = new Map<string, string | null>();

/**
 * The IANA name of a time zone in the spelling of the tz database (`australia/sydney` →
 * `Australia/Sydney`, `utc` → `UTC`; an alias becomes the name ICU keeps for it, also in the
 * database), or undefined for anything else. `Intl` alone is lenient: it takes any case and
 * UTC offsets (`+05:30`), which are not zone names and which Ortto need not take.
 */
export function canonicalTimeZone(zone: string): string | undefined {
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

function isRealDate(d: { year: number; month: number; day: number }): boolean {
  const date = new Date(0);
  date.setUTCFullYear(d.year, d.month - 1, d.day); // unlike Date.UTC, takes years 1–99 as given
  return date.getUTCFullYear() === d.year && date.getUTCMonth() === d.month - 1 && date.getUTCDate() === d.day;
}

const date = z.pipe(
  z
    .strictObject(
      {
        year: z.int({ error: "expected an integer year" }).check(z.gte(1, "expected a year ≥ 1"), z.lte(9999, "expected a year ≤ 9999")),
        month: z.int({ error: "expected an integer month" }).check(z.gte(1, "expected a month 1–12"), z.lte(12, "expected a month 1–12")),
        day: z.int({ error: "expected an integer day" }).check(z.gte(1, "expected a day 1–31"), z.lte(31, "expected a day 1–31")),
        timezone: z
          .string({ error: "expected an IANA time zone such as Australia/Sydney" })
          .check(
            z.maxLength(64, "expected an IANA time zone such as Australia/Sydney"),
            z.refine(isTimeZone, "expected an IANA time zone such as Australia/Sydney (not a UTC offset)"),
          ),
      },
      { error: "expected a date {year, month, day, timezone}" },
    )
    .check(z.refine(isRealDate, "expected a real calendar date")),
  // Forwarded in the tz database's spelling, whatever case the page used.
  z.transform((d) => ({ ...d, timezone: canonicalTimeZone(d.timezone) ?? d.timezone })),
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

const json = z.union([z.record(z.string(), z.unknown()), z.array(z.unknown())], { error: "expected a JSON object or array" });

const url = z
  .string({ error: "expected a URL string" })
  .check(
    z.maxLength(MAX_TEXT, `expected at most ${MAX_TEXT} characters`),
    z.url({ protocol: /^https?$/, error: "expected an http(s) URL" }),
  );

const emailFormat = z.email();
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
