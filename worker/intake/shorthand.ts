import { SNIPPET_PAGE_VIEW_SHORTHANDS } from "../../shared/catalogue.ts";
import { ConversionError, type Issue, phoneObject, type Renamed } from "./friendly.ts";

/**
 * The browser snippet's shorthands, expanded at the edge so that the script need not carry the
 * mapping (it is 2 kB gzipped, and every byte is paid by every page view):
 * - an `activity_id` without the `act:` prefix is a custom activity: `logged-in` → `act:cm:logged-in`;
 * - person fields `email`, `first`, `last`, `ei` are `str::email` … and `phone` is `phn::phone`;
 *   a field given both ways is a 400 (as for the plan's friendly names);
 * - a phone given as a string (`phone` or `phn::phone`) becomes Ortto's
 *   `{"phone": "+61401234567", "parse_with_country_code": true}`, keeping only digits and `+`
 *   (a string with an extension or a `(0)` is a 400: worker/intake/friendly.ts `phoneObject`).
 * - the page-view attributes the snippet records (`data-pageviews`) come as `u`, `t` and `r`
 *   (scripts cached from before as `page-url`, `page-title` and `referrer`), for
 *   `str:cm:page-url`, `str:cm:page-title` and `str:cm:referrer`, whole: a text value is cut here
 *   to Ortto's 255 characters (never leaving half of a surrogate pair);
 * - `created` given as a number (ms since 1970, as the snippet stamps it) becomes Ortto's ISO 8601
 *   string, the same for every re-send of it (only an integer that is a date: any other number is left for the schema to refuse);
 * - the device's clock: the snippet sends its own time at sending as a top-level `t` (ms),
 *   and stamps `created` in that same clock. The relay takes `t` off the body and moves each
 *   numeric `created` by its own receipt time less `t` when that is a minute or more
 *   (CLOCK_TOLERANCE_MS: less may be time in transit), rounded to CLOCK_STEP_MS (so a device
 *   clock hours off, or stepped since the call, still dates events right); the `created` checks
 *   (not in the future, not too old) then judge the corrected value. The page's times (`t`, `created`)
 *   may carry fractions of a ms (its clock is `performance.now()`'s): `created` is rounded here. A
 *   body without `t` (a server, an older snippet) keeps its `created` as sent, and an integer only.
 *   A `t` that is not a date in ms is a 400 naming `t`.
 * - the request's `activities` and `identity_token` come as `a` and `i` (scripts cached from
 *   before send the long names, still taken; both ways in one request is a 400);
 * Everything else is left as it is, for the schema to judge.
 */
const SHORTHANDS = [
  ["email", "str::email"],
  ["first", "str::first"],
  ["last", "str::last"],
  ["ei", "str::ei"],
  ["phone", "phn::phone"],
] as const;

/** The snippet's page-view attributes (catalogue ids `str:cm:page-url` …), and as scripts cached from before send them (no other attribute's friendly name: shared/catalogue.ts). */
const ATTRIBUTE_SHORTHANDS = SNIPPET_PAGE_VIEW_SHORTHANDS;

/**
 * What the pass found, when the relay asks (the tests' callers need not): its 400s, as the page
 * wrote them, and per activity which shorthands it used (bit n: `SHORTHANDS[n]`; bit 8 + n:
 * `ATTRIBUTE_SHORTHANDS[n]`; `PHONE_STRING`: a phone string became Ortto's object), for the
 * errors found later to name what the page wrote (`shorthandNames`).
 */
export interface Expansion {
  issues: Issue[];
  used: number[];
  /** The request came as `a` and `i` (the snippet's): errors name them so. */
  short?: boolean;
}
const ATTRIBUTE_BIT = 8;
const PHONE_SHORTHAND = 1 << SHORTHANDS.findIndex(([short]) => short === "phone");
const PHONE_STRING = 1 << 16;

/**
 * Moves `short` to `long` in an object; with `clip`, a text value moved is cut to Ortto's 255
 * characters. A value given both ways is left where it is (the schema refuses the shorthand),
 * and is a 400 when the relay asks. Returns the bits (from `bit`) of the pairs moved.
 */
function expand(
  object: Record<string, unknown>,
  pairs: readonly (readonly [string, string])[],
  clip: boolean,
  bit: number,
  at: { i: number; part: "attributes" | "fields"; expansion: Expansion | undefined },
): number {
  let used = 0;
  for (let n = 0; n < pairs.length; n++) {
    const [short, long] = pairs[n] as readonly [string, string];
    if (Object.hasOwn(object, short)) {
      if (Object.hasOwn(object, long)) {
        at.expansion?.issues.push({
          path: `activities.${at.i}.${at.part}.${short}`,
          message: `given twice: as ${short} and as ${long}; send one`,
        });
        continue;
      }
      used |= 1 << (bit + n);
      const value = object[short];
      // (A cut that ends in the first half of a surrogate pair drops it: Ortto would get a lone surrogate.)
      if (!Object.hasOwn(object, long))
        object[long] = clip && typeof value === "string" ? value.slice(0, 255).replace(/[\ud800-\udbff]$/, "") : value;
      delete object[short];
    }
  }
  return used;
}

/** The largest time a Date holds (ms): beyond it, `toISOString` would throw. */
const MAX_DATE_MS = 8.64e15;
/**
 * The device's clock is corrected in whole steps of this (ms): a device whose clock is right is
 * never moved (its request's latency rounds to 0), and a re-send of an event, whose latency
 * differs, almost always gets the same `created` again, which Ortto merges on (with `key`).
 */
export const CLOCK_STEP_MS = 10_000;
/**
 * A device within this of the relay's clock is left as it is: the difference may be the request's
 * time in transit (a request held 20 s by a slow network would otherwise date its events 20 s
 * late, and differently from its re-send, which Ortto would then record twice).
 */
export const CLOCK_TOLERANCE_MS = 60_000;

const isObject = (x: unknown): x is Record<string, unknown> => !!x && typeof x === "object" && !Array.isArray(x);

/** The request's own keys as the snippet sends them: `{"a": [...], "i": token, "t": ms}`. */
export const REQUEST_SHORTHANDS = [
  ["a", "activities"],
  ["i", "identity_token"],
] as const;

export function expandShorthands(body: unknown, expansion?: Expansion, receivedAt = Date.now()): unknown {
  if (isObject(body))
    for (const [short, long] of REQUEST_SHORTHANDS)
      if (Object.hasOwn(body, short)) {
        if (Object.hasOwn(body, long))
          expansion?.issues.push({ path: short, message: `given twice: as ${short} and as ${long}; send one` });
        else {
          body[long] = body[short];
          delete body[short];
          if (expansion) expansion.short = true;
        }
      }
  const activities = isObject(body) ? body.activities : undefined;
  if (!Array.isArray(activities)) return body;
  // The device's clock minus the relay's, in CLOCK_STEP_MS steps (0 without a `t`).
  let skew = 0;
  // A page's request (with `t`): its times are the page's monotonic clock, in fractions of a ms, rounded here.
  let page = false;
  if (isObject(body) && Object.hasOwn(body, "t")) {
    const t = body.t;
    if (typeof t === "number" && t > 0 && t <= MAX_DATE_MS) {
      const off = receivedAt - t;
      skew = Math.abs(off) < CLOCK_TOLERANCE_MS ? 0 : Math.round(off / CLOCK_STEP_MS) * CLOCK_STEP_MS;
      page = true;
      // Known to the relay only: what goes on is Ortto's shape.
      delete body.t;
    } else if (expansion) {
      expansion.issues.push({ path: "t", message: "expected the device's time at sending, in ms since 1970" });
    }
  }
  for (let i = 0; i < activities.length; i++) {
    const activity: unknown = activities[i];
    if (!isObject(activity)) continue;
    const id = activity.activity_id;
    if (typeof id === "string" && id && !id.startsWith("act:")) activity.activity_id = `act:cm:${id}`;
    const created = activity.created;
    if (typeof created === "number" && (page || Number.isInteger(created)) && Math.abs(created + skew) <= MAX_DATE_MS)
      activity.created = new Date(Math.round(created) + skew).toISOString();
    let used = 0;
    if (isObject(activity.attributes))
      used = expand(activity.attributes, ATTRIBUTE_SHORTHANDS, true, ATTRIBUTE_BIT, { i, part: "attributes", expansion });
    const fields = activity.fields;
    if (isObject(fields)) {
      used |= expand(fields, SHORTHANDS, false, 0, { i, part: "fields", expansion });
      const phone = fields["phn::phone"];
      if (typeof phone === "string") {
        try {
          fields["phn::phone"] = phoneObject(phone);
          used |= PHONE_STRING;
        } catch (err) {
          if (!(err instanceof ConversionError)) throw err;
          // Left a string, which the schema refuses, when the relay does not ask.
          const written = used & PHONE_SHORTHAND ? "phone" : "phn::phone";
          expansion?.issues.push({ path: `activities.${i}.fields.${written}`, message: err.message });
        }
      }
    }
    if (used && expansion) expansion.used[i] = used;
  }
  return body;
}

/** The names the page wrote for what the pass expanded, for errors (see friendly.ts `pathAsSent`); built only when one is needed. */
export function shorthandNames(expansion: Expansion): Renamed | undefined {
  let renamed: Renamed | undefined;
  for (const [i, used] of expansion.used.entries()) {
    if (!used) continue;
    const fields = new Map<string, string>();
    const attributes = new Map<string, string>();
    for (const [n, [short, long]] of SHORTHANDS.entries()) if (used & (1 << n)) fields.set(long, short);
    for (const [n, [short, long]] of ATTRIBUTE_SHORTHANDS.entries()) if (used & (1 << (ATTRIBUTE_BIT + n))) attributes.set(long, short);
    renamed ??= new Map();
    renamed.set(i, { fields, attributes, ...(used & PHONE_STRING ? { whole: new Set(["fields.phn::phone"]) } : {}) });
  }
  return renamed;
}
