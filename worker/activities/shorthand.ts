/**
 * The browser snippet's shorthands, expanded at the edge so that the script need not carry the
 * mapping (it is 2 kB gzipped, and every byte is paid by every page view):
 * - an `activity_id` without the `act:` prefix is a custom activity: `logged-in` → `act:cm:logged-in`;
 * - person fields `email`, `first`, `last`, `ei` are `str::email` … and `phone` is `phn::phone`;
 *   a field given both ways keeps the value of its Ortto id;
 * - a phone given as a string (`phone` or `phn::phone`) becomes Ortto's
 *   `{"phone": "+61401234567", "parse_with_country_code": true}`, keeping only digits and `+`.
 * Everything else is left as it is, for the schema to judge.
 */
const SHORTHANDS = [
  ["email", "str::email"],
  ["first", "str::first"],
  ["last", "str::last"],
  ["ei", "str::ei"],
  ["phone", "phn::phone"],
] as const;

const isObject = (x: unknown): x is Record<string, unknown> => !!x && typeof x === "object" && !Array.isArray(x);

export function expandShorthands(body: unknown): unknown {
  const activities = isObject(body) ? body.activities : undefined;
  if (!Array.isArray(activities)) return body;
  for (const activity of activities) {
    if (!isObject(activity)) continue;
    const id = activity.activity_id;
    if (typeof id === "string" && id && !id.startsWith("act:")) activity.activity_id = `act:cm:${id}`;
    const fields = activity.fields;
    if (!isObject(fields)) continue;
    for (const [short, long] of SHORTHANDS) {
      if (Object.hasOwn(fields, short)) {
        if (!Object.hasOwn(fields, long)) fields[long] = fields[short];
        delete fields[short];
      }
    }
    const phone = fields["phn::phone"];
    if (typeof phone === "string") fields["phn::phone"] = { phone: phone.replace(/[^\d+]/g, ""), parse_with_country_code: true };
  }
  return body;
}
