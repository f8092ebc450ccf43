/**
 * The browser snippet's shorthands, expanded at the edge so that the script need not carry the
 * mapping (it is 2 kB gzipped, and every byte is paid by every page view):
 * - an `activity_id` without the `act:` prefix is a custom activity: `logged-in` → `act:cm:logged-in`;
 * - person fields `email`, `first`, `last`, `ei` are `str::email` … and `phone` is `phn::phone`;
 *   a field given both ways keeps the value of its Ortto id;
 * - a phone given as a string (`phone` or `phn::phone`) becomes Ortto's
 *   `{"phone": "+61401234567", "parse_with_country_code": true}`, keeping only digits and `+`.
 * - the page-view attributes the snippet records (`data-pageviews`) come as `page-url`,
 *   `page-title` and `referrer`, for `str:cm:page-url` …, whole: a text value is cut here to
 *   Ortto's 255 characters (never leaving half of a surrogate pair);
 * - `created` given as a number (ms since 1970, as the snippet stamps it) becomes Ortto's ISO 8601
 *   string, the same for every re-send of it (only an integer that is a date: any other number is left for the schema to refuse).
 * Everything else is left as it is, for the schema to judge.
 */
const SHORTHANDS = [
  ["email", "str::email"],
  ["first", "str::first"],
  ["last", "str::last"],
  ["ei", "str::ei"],
  ["phone", "phn::phone"],
] as const;

/** The snippet's page-view attributes (catalogue ids `str:cm:page-url` …). */
const ATTRIBUTE_SHORTHANDS = [
  ["page-url", "str:cm:page-url"],
  ["page-title", "str:cm:page-title"],
  ["referrer", "str:cm:referrer"],
] as const;

/**
 * Moves `short` to `long` in an object (a value given both ways keeps the long one); with `clip`,
 * a text value moved is cut to Ortto's 255 characters.
 */
function expand(object: Record<string, unknown>, pairs: readonly (readonly [string, string])[], clip = false) {
  for (const [short, long] of pairs) {
    if (Object.hasOwn(object, short)) {
      const value = object[short];
      // (A cut that ends in the first half of a surrogate pair drops it: Ortto would get a lone surrogate.)
      if (!Object.hasOwn(object, long))
        object[long] = clip && typeof value === "string" ? value.slice(0, 255).replace(/[\ud800-\udbff]$/, "") : value;
      delete object[short];
    }
  }
}

/** The largest time a Date holds (ms): beyond it, `toISOString` would throw. */
const MAX_DATE_MS = 8.64e15;

const isObject = (x: unknown): x is Record<string, unknown> => !!x && typeof x === "object" && !Array.isArray(x);

export function expandShorthands(body: unknown): unknown {
  const activities = isObject(body) ? body.activities : undefined;
  if (!Array.isArray(activities)) return body;
  for (const activity of activities) {
    if (!isObject(activity)) continue;
    const id = activity.activity_id;
    if (typeof id === "string" && id && !id.startsWith("act:")) activity.activity_id = `act:cm:${id}`;
    const created = activity.created;
    if (typeof created === "number" && Number.isInteger(created) && Math.abs(created) <= MAX_DATE_MS)
      activity.created = new Date(created).toISOString();
    if (isObject(activity.attributes)) expand(activity.attributes, ATTRIBUTE_SHORTHANDS, true);
    const fields = activity.fields;
    if (!isObject(fields)) continue;
    expand(fields, SHORTHANDS);
    const phone = fields["phn::phone"];
    if (typeof phone === "string") fields["phn::phone"] = { phone: phone.replace(/[^\d+]/g, ""), parse_with_country_code: true };
  }
  return body;
}
