/**
 * Friendly names, converted at the edge: a page may write `orderTotal: 24.99` and
 * `deliveryDate: "2026-12-24"` where Ortto takes `int:cm:order-total: 24990` and
 * `dtz:cm:delivery-date: {year, month, day, timezone}`. The relay turns the first into the second
 * before it validates, so the snippet carries none of this.
 *
 * Only friendly names are converted. An Ortto id keeps its value as sent, and the schema judges it
 * strictly (`int::v: 15.3` is refused, not rounded); an attribute given both ways is refused.
 */
import type { FieldKind } from "../../shared/field-ids.ts";
import { isDateTime, isRealDate, isTimeZone, zoneAsForwarded } from "../../shared/ortto-types.ts";
import type { PlannedActivity, PlannedField, TrackingPlan } from "../../shared/plan.ts";

/** A conversion's refusal: the rule, in the words of a 400's message. */
export class ConversionError extends Error {}

const NUMBER = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/;
const MAX_THOUSANDTHS = "9,007,199,254,740.991";

/**
 * A number × 1000, exactly, as Ortto keeps decimals and currency (24.99 → 24990). Worked out on
 * the number's shortest round-trip decimal form (`String(n)`, which JSON.parse's result prints as
 * the page wrote it), never by multiplying floats (1.005 × 1000 is 1004.9999999999999): more than
 * three decimals is refused, never rounded, and so is a result beyond a safe integer.
 */
export function thousandths(value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value)) throw new ConversionError("expected a number such as 24.99");
  const text = String(value);
  // The common case, `24.99` or `1530`: the digits without the point, padded to three decimals.
  const point = text.indexOf(".");
  if (!text.includes("e") && (point === -1 || text.length - point <= 4)) {
    const result = point === -1 ? value * 1000 : Number(text.slice(0, point) + text.slice(point + 1).padEnd(3, "0"));
    if (Number.isSafeInteger(result)) return result === 0 ? 0 : result;
  }
  return exactThousandths(text);
}

/** The general case: exponent forms (`1e21`, `1.5e-7`) and refusals. */
function exactThousandths(text: string): number {
  const [, sign = "", whole = "", fraction = "", exponent = "0"] = NUMBER.exec(text) ?? [];
  const digits = whole + fraction;
  // Where the decimal point falls in `digits` once the value is × 1000.
  const point = whole.length + Number(exponent) + 3;
  if (point > 30) throw new ConversionError(`expected at most ${MAX_THOUSANDTHS} (Ortto stores × 1000 as a safe integer)`);
  const kept = point <= 0 ? "" : digits.slice(0, point).padEnd(point, "0");
  const dropped = point <= 0 ? digits : digits.slice(point);
  if (/[1-9]/.test(dropped)) throw new ConversionError("expected at most 3 decimals (Ortto stores decimals and currency × 1000)");
  const result = Number(`${sign}${kept || "0"}`);
  if (!Number.isSafeInteger(result))
    throw new ConversionError(`expected at most ${MAX_THOUSANDTHS} (Ortto stores × 1000 as a safe integer)`);
  return result === 0 ? 0 : result;
}

const DATE = /^(\d{4})-(\d\d)-(\d\d)$/;
/** Formatters by zone: building one costs ~100 µs, so once per zone and isolate (zones are few; bounded all the same). */
const formats = new Map<string, Intl.DateTimeFormat>();
function calendarDay(ms: number, zone: string): { year: number; month: number; day: number } {
  let format = formats.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", { timeZone: zone, year: "numeric", month: "numeric", day: "numeric" });
    if (formats.size < 500) formats.set(zone, format);
  }
  const parts = format.formatToParts(ms);
  const part = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  return { year: part("year"), month: part("month"), day: part("day") };
}

/** From 0001-01-02T00:00:00Z on, every zone (offsets are under a day) is in year 1 or later. */
const YEAR_1_SURELY = Date.parse("0001-01-02T00:00:00Z");
/** Whether an instant is in the years AD in a zone (only asked near year 1, so not cached). */
function isAnnoDomini(ms: number, zone: string): boolean {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone: zone, year: "numeric", era: "short" }).formatToParts(ms);
  return parts.find((p) => p.type === "era")?.value === "AD";
}

/**
 * Ortto's date `{year, month, day, timezone}` from `"2026-12-24"` (that day), or from an ISO date
 * and time with a zone (the day it is then in `zone`). Ortto's own object is taken as it is.
 */
export function orttoDate(value: unknown, zone: string): unknown {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) return value;
  if (typeof value === "string") {
    if (DATE.test(value)) {
      const date = { year: +value.slice(0, 4), month: +value.slice(5, 7), day: +value.slice(8, 10), timezone: zone };
      if (date.year < 1 || !isRealDate(date)) throw new ConversionError("expected a real calendar date");
      return date;
    }
    if (isDateTime(value)) {
      const ms = Date.parse(value);
      const date = calendarDay(ms, zone);
      // Intl counts 1 BC as year 1 (its era part, which this format leaves out, says BC): an
      // instant up to a day after 0001-01-01 in UTC may still be in year 0 in the zone.
      if (ms < YEAR_1_SURELY && !isAnnoDomini(ms, zone)) date.year = 0;
      if (!(date.year >= 1 && date.year <= 9999)) throw new ConversionError("expected a date in the years 1–9999");
      return { ...date, timezone: zone };
    }
  }
  throw new ConversionError("expected a date such as 2026-12-24, or an ISO date and time with a zone");
}

/** Ortto's date and time (an ISO string) from an ISO string, as it is, or from epoch milliseconds. */
export function orttoDateTime(value: unknown): unknown {
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isSafeInteger(value)) {
    const iso = Math.abs(value) <= 8.64e15 ? new Date(value).toISOString() : "";
    if (isDateTime(iso) && !iso.startsWith("0000")) return iso;
  }
  throw new ConversionError("expected an ISO 8601 date and time with a zone, or epoch milliseconds of a date in the years 1–9999");
}

/** What a phone string may hold: digits and the separators people write, with one leading +. */
const PHONE = /^\+?[\d\s().-]+$/;
/** `+44 (0)20 …`: a trunk prefix kept or dropped depending on who dials, so not one number. */
const TRUNK_PREFIX = /\(\s*0\s*\)/;

/**
 * Ortto's phone object from a phone string, its digits and leading + kept for Ortto to parse with
 * the country code. Only digits and separators: an extension (`x89`, `ext. 2`) or a `(0)` would
 * be glued into another number, so they are refused, never guessed.
 */
export function phoneObject(value: string): { phone: string; parse_with_country_code: true } {
  if (!PHONE.test(value))
    throw new ConversionError("expected a phone number: digits, spaces, dashes, dots, brackets and a leading +; no extension");
  if (TRUNK_PREFIX.test(value))
    throw new ConversionError("expected a phone number without a (0) trunk prefix: +44 20 7946 0000, not +44 (0)20 7946 0000");
  return { phone: value.replace(/[^\d+]/g, ""), parse_with_country_code: true };
}

/** The value Ortto takes for a friendly name's value of this kind, or a ConversionError. */
export function convert(field: PlannedField, value: unknown, visitorZone: string | undefined): unknown {
  const kind: FieldKind = field.kind;
  switch (kind) {
    case "decimal":
    case "currency":
      return thousandths(value);
    case "date":
      // The catalogue's zone as written (checked by the build; resolved here, on first use, not at start).
      return orttoDate(value, (field.timezone && isTimeZone(field.timezone) && zoneAsForwarded(field.timezone)) || visitorZone || "UTC");
    case "datetime":
      return orttoDateTime(value);
    case "phone":
      // As the snippet's `phone` shorthand: digits and +, for Ortto to parse with its country code.
      return typeof value === "string" ? phoneObject(value) : value;
    case "place":
      return typeof value === "string" ? { name: value } : value;
    default:
      // Same value as the Ortto id takes: the schema checks it (selects against their options).
      return value;
  }
}

/** Where a page's name is shown in errors: as `describeIssue` would print it. */
const segment = (key: string) => (key === "" || /[.\s]/.test(key) ? JSON.stringify(key) : key);

/** Sets an own property without invoking a setter (a page's `__proto__` key stays a plain key, for the schema to refuse). */
function put(target: Record<string, unknown>, key: string, value: unknown) {
  if (key === "__proto__") Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}

export interface Issue {
  path: string;
  message: string;
}

/**
 * What the page wrote, for errors found after the relay renamed its keys: per activity, per part,
 * Ortto id → the name the page wrote (a friendly name, or the snippet's shorthand), and in `whole`
 * the `part.id`s whose value the relay made from a string (a phone, a place, a date): an error
 * inside such a value is the page's string's.
 */
export interface Written {
  attributes?: Map<string, string>;
  fields?: Map<string, string>;
  whole?: Set<string>;
}
export type Renamed = Map<number, Written>;

/** An object of attributes or person fields with its friendly names put as Ortto ids, or undefined if it has none. */
function translate(
  object: Record<string, unknown>,
  byName: ReadonlyMap<string, PlannedField>,
  at: { i: number; part: "attributes" | "fields"; written: Written },
  visitorZone: string | undefined,
  issues: Issue[],
  edge?: readonly PlannedField[],
): Record<string, unknown> | undefined {
  const where = `activities.${at.i}.${at.part}`;
  let friendly = false;
  for (const key in object) {
    // Ortto ids have a colon, friendly names never do: for an activity written in ids this is the whole cost.
    if (key.includes(":")) continue;
    const relayFilled = edge?.find((f) => f.name === key);
    if (relayFilled) issues.push({ path: `${where}.${segment(key)}`, message: relayFilledMessage(relayFilled) });
    else if (byName.has(key)) friendly = true;
  }
  if (!friendly) return undefined;
  const names = at.written[at.part] ?? new Map<string, string>();
  at.written[at.part] = names;
  const out: Record<string, unknown> = {};
  for (const key in object) {
    const value = object[key];
    const field = key.includes(":") ? undefined : byName.get(key);
    if (!field) {
      put(out, key, value);
      continue;
    }
    if (Object.hasOwn(object, field.id)) {
      // The other key as the page wrote it: the Ortto id, or the snippet's shorthand for it (`page-url`).
      const other = names.get(field.id) ?? field.id;
      issues.push({ path: `${where}.${segment(key)}`, message: `given twice: as ${key} and as ${other}; send one` });
      continue;
    }
    try {
      const converted = value === undefined || value === null ? value : convert(field, value, visitorZone);
      out[field.id] = converted;
      names.set(field.id, key);
      if (converted !== value && typeof value !== "object") {
        at.written.whole ??= new Set();
        at.written.whole.add(`${at.part}.${field.id}`);
      }
    } catch (err) {
      if (!(err instanceof ConversionError)) throw err;
      issues.push({ path: `${where}.${segment(key)}`, message: err.message });
    }
  }
  return out;
}

export function relayFilledMessage(field: PlannedField): string {
  return `set by the relay from ${field.source === "page_url" ? "the page's address" : field.source === "country" || field.source === "region" || field.source === "city" ? "the visitor's location" : "the visitor's User-Agent"} (source ${field.source} in the catalogue): a page does not send it`;
}

export interface Translation {
  issues: Issue[];
  renamed?: Renamed;
  /** Set when a friendly name was put as an Ortto id: the body changed. */
  translated?: true;
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

/**
 * Puts the friendly names of every activity in a request body as Ortto ids, converting their
 * values, in place. Activities written in Ortto ids are only looked at (a scan of their keys for
 * one without a colon), never copied; the relay calls this only for a body its fast path did not
 * accept. `fromPage`: a page's request, which may not send what the relay fills (here: by friendly
 * name; by Ortto id, worker/intake/edge.ts). `renamed`: what an earlier pass renamed (the
 * snippet's shorthands), extended and returned. Problems are returned with the path as the page
 * wrote it.
 */
export function translateRequest(
  body: unknown,
  plan: TrackingPlan,
  options: { visitorZone?: string; fromPage: boolean; renamed?: Renamed },
): Translation {
  const issues: Issue[] = [];
  let renamed = options.renamed;
  let translated = false;
  const list = isObject(body) ? body.activities : undefined;
  if (!Array.isArray(list)) return renamed ? { issues, renamed } : { issues };
  for (let i = 0; i < list.length; i++) {
    const activity: unknown = list[i];
    if (!isObject(activity)) continue;
    const id = activity.activity_id;
    const definition: PlannedActivity | undefined = typeof id === "string" ? plan.activities.get(id) : undefined;
    if (!definition) continue;
    const edge = options.fromPage && definition.edge.length ? definition.edge : undefined;
    const written: Written = renamed?.get(i) ?? {};
    const { attributes, fields } = activity;
    if (isObject(attributes)) {
      const t = translate(attributes, definition.byName, { i, part: "attributes", written }, options.visitorZone, issues, edge);
      if (t) {
        activity.attributes = t;
        translated = true;
      }
    }
    if (isObject(fields)) {
      const t = translate(fields, plan.personByName, { i, part: "fields", written }, options.visitorZone, issues);
      if (t) {
        activity.fields = t;
        translated = true;
      }
    }
    if ((written.attributes || written.fields) && renamed?.get(i) !== written) {
      renamed ??= new Map();
      renamed.set(i, written);
    }
  }
  return { issues, ...(renamed ? { renamed } : {}), ...(translated ? { translated } : {}) };
}

/** A schema issue's path with the Ortto id put back as the name the page wrote (and no deeper than a value it wrote as a string). */
export function pathAsSent(path: readonly PropertyKey[], renamed: Renamed | undefined): PropertyKey[] {
  const [top, index, part, key] = path;
  if (!renamed || top !== "activities" || typeof index !== "number" || typeof key !== "string") return [...path];
  const written = renamed.get(index);
  const name = part === "attributes" || part === "fields" ? written?.[part]?.get(key) : undefined;
  if (name === undefined) return [...path];
  return [top, index, part as string, name, ...(written?.whole?.has(`${part as string}.${key}`) ? [] : path.slice(4))];
}

/** A key the schema names (an unknown one) as the page wrote it: `str:cm:referrer` the page sent as `referrer`. */
export function keyAsSent(path: readonly PropertyKey[], key: string, renamed: Renamed | undefined): string {
  const [top, index, part] = path;
  if (!renamed || top !== "activities" || typeof index !== "number" || !(part === "attributes" || part === "fields")) return key;
  return renamed.get(index)?.[part]?.get(key) ?? key;
}

/** The zone a plain date is in when the catalogue names none: the visitor's, when Cloudflare knows it. */
export function visitorZone(zone: unknown): string | undefined {
  return typeof zone === "string" && isTimeZone(zone) ? zoneAsForwarded(zone) : undefined;
}
