/**
 * The body of `POST /v1/activities/create`, as Ortto defines it, checked against a catalogue.
 * The worker builds this schema once per isolate and runs it on every request.
 */
import * as z from "zod/mini";
import { type FieldSpec, MAX_ATTRIBUTES, type ResolvedCatalogue, specKind, specOptions } from "./catalogue.ts";
import { ACTIVITY_ID, IDENTIFYING_FIELDS } from "./field-ids.ts";
import {
  dateTimeMs,
  isDateTime,
  isoDateTime,
  jsonBytesAtMost,
  MAX_DEPTH,
  MAX_TEXT,
  onlyKeys,
  REFUSED,
  type ValueBytes,
  valueBytes,
  valueSchema,
} from "./ortto-types.ts";
import { trackingPlan } from "./plan.ts";

/** Ortto's limits per request and per activity. */
export const MAX_ACTIVITIES = 100;
export const MAX_BODY_BYTES = 2 * 1024 * 1024;
export const MAX_ACTIVITY_BYTES = 16 * 1024;
/** What a client may send: the relay adds location, key and created (≤ 512 bytes) before Ortto's 16 kB applies. */
const ACTIVITY_BYTES_FROM_CLIENT = MAX_ACTIVITY_BYTES - 512;
/** Ortto's back-dating window, and our tolerance for clocks that run fast. */
export const MAX_AGE_MS = 90 * 24 * 60 * 60 * 1000;
/**
 * What the relay accepts: five minutes short of Ortto's 90 days, so an activity that has to wait in
 * the queue (under load, in an outage) still reaches Ortto in time, where the consumer's own check
 * (a minute's margin) would otherwise set it aside untried.
 */
export const MAX_ACCEPTED_AGE_MS = MAX_AGE_MS - 5 * 60 * 1000;
export const MAX_FUTURE_MS = 5 * 60 * 1000;

/** One activity as it travels on the wire (what a page or server sends, minus the key). */
export interface ActivityInput {
  activity_id: string;
  person_id?: string;
  created?: string;
  key?: string;
  fields?: Record<string, unknown>;
  attributes?: Record<string, unknown>;
  location?: Location;
}

export type Location =
  | { source_ip: string }
  | { custom: { country_name?: string; region_name?: string; city_name?: string; position_name?: string; lat?: number; lng?: number } }
  | { address: Record<string, string> };

/** The request body of `/v1/activities/create`. */
export interface ActivitiesRequest {
  async?: boolean;
  merge_by?: string[];
  activities: ActivityInput[];
  /** The signed-identity token of the person in `fields` (see the relay's security model); never forwarded. */
  identity_token?: string;
}

/** One entry of Ortto's answer, in the order of the request's activities. */
export interface ActivityResult {
  person_id?: string;
  person_status: "created" | "merged" | "updated" | "ignored" | "matched" | "failed" | "queued" | string;
  activity_id?: string;
  status: "ingested" | "queued" | "failed" | string;
}
export interface ActivitiesResponse {
  activities: ActivityResult[];
}

/** Ortto's error envelope, which the relay uses for its own errors too. */
export interface ErrorBody {
  request_id: string;
  code: number;
  error: string;
  details?: { path: string; message: string }[];
}

function checkCreated(created: string): boolean {
  return Date.parse(created) >= Date.now() - MAX_ACCEPTED_AGE_MS;
}
function notInFuture(created: string): boolean {
  return Date.parse(created) <= Date.now() + MAX_FUTURE_MS;
}

const created = isoDateTime.check(
  z.refine(checkCreated, "Created date is more than 90 days ago"),
  z.refine(notInFuture, "Created date is more than 5 minutes in the future"),
);
const key = z
  .string({ error: "expected a string" })
  .check(z.minLength(1, "expected a non-empty string"), z.maxLength(MAX_TEXT, `expected at most ${MAX_TEXT} characters`));
const personId = z.string({ error: "expected a string" }).check(z.regex(/^[0-9a-f]{1,64}$/, "expected an Ortto person id (hex)"));

export { MAX_DEPTH };

/**
 * The field (`["attributes", "obj:cm:items"]`, `["location"]`) holding a value nested deeper than
 * MAX_DEPTH, or undefined. Iterative, so that no depth of input can overflow the stack here.
 */
export function tooDeep(activity: unknown): (string | number)[] | undefined {
  if (typeof activity !== "object" || activity === null) return undefined;
  const stack: [value: unknown, depth: number, field: (string | number)[]][] = [];
  for (const [key, value] of Object.entries(activity)) stack.push([value, 1, [key]]);
  while (stack.length) {
    const [value, depth, field] = stack.pop() as [unknown, number, (string | number)[]];
    if (typeof value !== "object" || value === null) continue;
    if (depth > MAX_DEPTH) return field;
    const top = field.length === 1 && (field[0] === "attributes" || field[0] === "fields");
    for (const [key, item] of Object.entries(value)) stack.push([item, depth + 1, top ? [...field, key] : field]);
  }
  return undefined;
}

const encoder = new TextEncoder();
/** Bytes of an activity's JSON; a UTF-16 length under a third of the limit cannot exceed it, so most need no encoding. */
function withinActivityLimit(value: unknown): boolean {
  const json = JSON.stringify(value);
  return json.length * 3 <= ACTIVITY_BYTES_FROM_CLIENT || encoder.encode(json).length <= ACTIVITY_BYTES_FROM_CLIENT;
}

/** Builds the per-activity schemas of a catalogue: one strict object per activity id. */
function activitySchemas(catalogue: ResolvedCatalogue) {
  const fieldsShape: Record<string, z.ZodMiniOptional> = {};
  for (const [id, spec] of Object.entries(catalogue.personFields)) {
    fieldsShape[id] = z.optional(valueSchema(specKind(spec), specOptions(spec)));
  }
  const fields = z.strictObject(fieldsShape, { error: "expected an object of person fields" });

  const plan = trackingPlan(catalogue);
  const byId = new Map<string, z.ZodMiniType>();
  for (const [id, definition] of Object.entries(catalogue.activities)) {
    const required = plan.activities.get(id)?.attributes.filter((a) => a.required) ?? [];
    const shape: Record<string, z.ZodMiniOptional> = {};
    for (const [attr, spec] of Object.entries(definition.attributes)) {
      shape[attr] = z.optional(valueSchema(specKind(spec), specOptions(spec)));
    }
    const attributes = z
      .strictObject(shape, { error: "expected an object of attributes" })
      .check(z.refine((a) => Object.keys(a).length <= MAX_ATTRIBUTES, `expected at most ${MAX_ATTRIBUTES} attributes (Ortto's limit)`));
    byId.set(
      id,
      z
        .strictObject({
          activity_id: z.literal(id),
          person_id: z.optional(personId),
          created: z.optional(created),
          key: z.optional(key),
          fields: z.optional(fields),
          attributes: z.optional(attributes),
          // Replaced by the relay (GEO_MODE), so only its size matters here.
          location: z.optional(z.unknown()),
        })
        .check(
          z.superRefine((a, ctx) => {
            // Ortto merges re-sends on key and created together: a key alone gets a new created each time.
            if (a.key !== undefined && a.created === undefined)
              ctx.issues.push({
                code: "custom",
                input: a.created,
                path: ["created"],
                message: "required when key is set (Ortto merges re-sends on key and created together)",
              });
            for (const attribute of required)
              if (a.attributes?.[attribute.id] === undefined)
                ctx.issues.push({
                  code: "custom",
                  input: undefined,
                  path: ["attributes", attribute.id],
                  message: `required by the catalogue: send ${attribute.name} (or ${attribute.id})`,
                });
            const ei = a.fields?.["str::ei"];
            if (typeof ei === "string" && !ei.trim())
              ctx.issues.push({
                code: "custom",
                input: ei,
                path: ["fields", "str::ei"],
                message: "expected a non-empty external id (an empty one identifies nobody)",
              });
          }),
          z.refine(
            (a) => a.person_id !== undefined || IDENTIFYING_FIELDS.some((f) => a.fields?.[f] !== undefined),
            `expected person_id or an identifying person field (${IDENTIFYING_FIELDS.join(", ")}): Ortto records activities only for identified people`,
          ),
          z.refine(withinActivityLimit, `expected at most ${MAX_ACTIVITY_BYTES / 1024} kB per activity (Ortto's limit)`),
        ),
    );
  }
  return byId;
}

const REQUEST_KEYS = new Set(["async", "merge_by", "identity_token", "activities"]);
const ACTIVITY_KEYS = new Set(["activity_id", "person_id", "created", "key", "fields", "attributes", "location"]);
const PERSON_ID = /^[0-9a-f]{1,64}$/;
/** Fields that name the person (an activity without a person_id needs one). */
function identified(fields: Record<string, unknown> | undefined): boolean {
  if (fields !== undefined) for (const f of IDENTIFYING_FIELDS) if (fields[f] !== undefined) return true;
  return false;
}
/** The bytes of `"name":` and a comma, for a key of ASCII characters that JSON does not escape (the catalogue's ids, the activity's keys). */
const member = (name: string) => name.length + 4;
/** A declared attribute or person field: the check of its kind, and the bytes of its key. */
type Declared = { bytes: ValueBytes; key: number };

/**
 * The relay's hot path: a predicate, built once per isolate, that is true only for bodies the
 * request schema accepts unchanged (test/unit/fast-accept.test.ts holds it to that). The worker
 * runs it first and falls back to the schema, for the answer and its messages, when it says no.
 * Each activity is walked once: each attribute and person field checked by its kind's check from
 * the catalogue, whose answers add up to a bound of the activity's size, so that only an activity
 * near Ortto's 16 kB is measured exactly. A few comparisons per value where zod walks every
 * schema generically.
 */
export function fastAccept(catalogue: ResolvedCatalogue): (body: unknown) => body is ActivitiesRequest {
  const declare = (fields: Record<string, FieldSpec>) =>
    new Map<string, Declared>(
      Object.entries(fields).map(([id, spec]) => [
        id,
        { bytes: valueBytes(specKind(spec), specOptions(spec), ACTIVITY_BYTES_FROM_CLIENT), key: member(id) },
      ]),
    );
  const personFields = declare(catalogue.personFields);
  const plan = trackingPlan(catalogue);
  const activities = new Map(
    Object.entries(catalogue.activities).map(([id, definition]) => [
      id,
      {
        attributes: declare(definition.attributes),
        required: plan.activities.get(id)?.required ?? [],
        // {"activity_id":"…"}
        bytes: 2 + member("activity_id") + id.length + 2,
      },
    ]),
  );
  const mergeBy = new Set(IDENTIFYING_FIELDS.filter((f) => f in catalogue.personFields));
  /**
   * The most bytes of an object of declared values (attributes, person fields) as JSON, or
   * REFUSED for a key not declared, a value its kind refuses, or more than `most` keys.
   */
  const declaredBytes = (object: unknown, declared: Map<string, Declared>, most = Number.POSITIVE_INFINITY) => {
    if (typeof object !== "object" || object === null || Array.isArray(object)) return REFUSED;
    let n = 2;
    let count = 0;
    for (const key in object) {
      const field = declared.get(key);
      if (field === undefined || ++count > most) return REFUSED;
      const value = (object as Record<string, unknown>)[key];
      if (value === undefined) continue;
      const bytes = field.bytes(value);
      if (bytes === REFUSED) return REFUSED;
      n += field.key + bytes;
    }
    return n;
  };
  /** The clock, read once per request rather than per activity. */
  let now = 0;

  const acceptsActivity = (a: unknown): boolean => {
    if (!onlyKeys(a, ACTIVITY_KEYS)) return false;
    const definition = activities.get(a.activity_id as string);
    if (!definition) return false;
    const { person_id, created: when, key, fields, attributes, location } = a as unknown as ActivityInput;
    let n = definition.bytes;
    if (person_id !== undefined) {
      if (!(typeof person_id === "string" && PERSON_ID.test(person_id))) return false;
      n += member("person_id") + person_id.length + 2;
    }
    if (when !== undefined) {
      if (!isDateTime(when)) return false;
      const at = dateTimeMs(when);
      if (!(at >= now - MAX_ACCEPTED_AGE_MS && at <= now + MAX_FUTURE_MS)) return false;
      n += member("created") + when.length + 2;
    } else if (key !== undefined) return false;
    if (key !== undefined) {
      if (!(typeof key === "string" && key.length >= 1 && key.length <= MAX_TEXT)) return false;
      n += member("key") + key.length * 6 + 2;
    }
    if (fields !== undefined) {
      const bytes = declaredBytes(fields, personFields);
      if (bytes === REFUSED) return false;
      const ei = fields["str::ei"];
      if (typeof ei === "string" && !ei.trim()) return false;
      n += member("fields") + bytes;
    }
    if (person_id === undefined && !identified(fields)) return false;
    if (attributes !== undefined) {
      const bytes = declaredBytes(attributes, definition.attributes, MAX_ATTRIBUTES);
      if (bytes === REFUSED) return false;
      n += member("attributes") + bytes;
    }
    for (const id of definition.required) if (attributes?.[id] === undefined) return false;
    if (location !== undefined) n += member("location") + jsonBytesAtMost(location, ACTIVITY_BYTES_FROM_CLIENT, 1);
    // Over the bound: measured as the schema measures it, once nothing is nested too deep for
    // JSON.stringify (a walk that stopped at the bound may not have reached the deepest value).
    return n <= ACTIVITY_BYTES_FROM_CLIENT || (n !== Number.POSITIVE_INFINITY && !tooDeep(a) && withinActivityLimit(a));
  };

  return (body: unknown): body is ActivitiesRequest => {
    if (!onlyKeys(body, REQUEST_KEYS)) return false;
    const { async, merge_by, identity_token, activities: list } = body as Record<string, unknown>;
    if (async !== undefined && typeof async !== "boolean") return false;
    if (merge_by !== undefined) {
      if (!Array.isArray(merge_by) || merge_by.length < 1 || merge_by.length > 3) return false;
      if (!merge_by.every((f) => mergeBy.has(f))) return false;
    }
    if (identity_token !== undefined && !(typeof identity_token === "string" && identity_token.length <= 128)) return false;
    if (!Array.isArray(list) || list.length < 1 || list.length > MAX_ACTIVITIES) return false;
    now = Date.now();
    for (const a of list) if (!acceptsActivity(a)) return false;
    // Every activity found by merge_by carries every field it names.
    return (
      merge_by === undefined ||
      list.every((a: ActivityInput) => a.person_id !== undefined || (merge_by as string[]).every((f) => a.fields?.[f] !== undefined))
    );
  };
}

/**
 * The request schema of a catalogue. An activity id that is not in the catalogue is named
 * in the error; every attribute and person field is checked against its declared kind, and
 * one that the catalogue does not declare is refused (Ortto would drop unknown attributes
 * silently and fail on unknown person fields; a 400 tells the developer at once).
 */
export function activitiesRequestSchema(catalogue: ResolvedCatalogue) {
  const byId = activitySchemas(catalogue);
  const known = [...byId.keys()].join(", ");
  // A transform, not a refinement: the activity's own schema may normalise values (time zones), and its output is what is forwarded.
  const activity = z.transform((input: unknown, ctx) => {
    if (typeof input !== "object" || input === null || Array.isArray(input)) {
      ctx.issues.push({ code: "custom", input, message: "expected an activity object" });
      return;
    }
    const id = (input as { activity_id?: unknown }).activity_id;
    if (typeof id !== "string" || !ACTIVITY_ID.test(id)) {
      ctx.issues.push({ code: "custom", input: id, path: ["activity_id"], message: "expected an activity id such as act:cm:logged-in" });
      return;
    }
    const schema = byId.get(id);
    if (!schema) {
      ctx.issues.push({
        code: "custom",
        input: id,
        path: ["activity_id"],
        message: `unknown activity ${id}: the catalogue has ${known}`,
      });
      return;
    }
    // Before the schema, whose size check would overflow the stack on a deep value.
    const deep = tooDeep(input);
    if (deep) {
      ctx.issues.push({ code: "custom", input: undefined, path: deep, message: `expected at most ${MAX_DEPTH} levels of nesting` });
      return input;
    }
    const result = schema.safeParse(input);
    if (!result.success) {
      for (const issue of result.error.issues) ctx.issues.push(issue as never);
      return input;
    }
    return result.data;
  });

  return z
    .strictObject(
      {
        async: z.optional(z.boolean({ error: "expected a boolean" })),
        merge_by: z.optional(
          z
            .array(
              // Only identifying fields: merging people by a name or a company would let one visitor write into another's profile.
              z.enum(IDENTIFYING_FIELDS.filter((f) => f in catalogue.personFields) as unknown as [string, ...string[]], {
                error: `expected an identifying person field the catalogue allows (${IDENTIFYING_FIELDS.join(", ")})`,
              }),
            )
            .check(z.minLength(1, "expected 1–3 person field ids"), z.maxLength(3, "expected 1–3 person field ids")),
        ),
        identity_token: z.optional(z.string({ error: "expected a string" }).check(z.maxLength(128, "expected at most 128 characters"))),
        activities: z
          .array(activity, { error: "expected an array of activities" })
          .check(
            z.minLength(1, "expected at least one activity"),
            z.maxLength(MAX_ACTIVITIES, `expected at most ${MAX_ACTIVITIES} activities per request (Ortto's limit)`),
          ),
      },
      { error: "expected a JSON object with an activities array" },
    )
    .check(
      // Ortto finds each activity's person by the merge_by fields: one an activity lacks fails it upstream.
      z.superRefine((request, ctx) => {
        if (!request.merge_by) return;
        for (const [i, activity] of request.activities.entries()) {
          const a = activity as ActivityInput;
          if (a.person_id !== undefined) continue;
          for (const field of request.merge_by)
            if (a.fields?.[field] === undefined)
              ctx.issues.push({
                code: "custom",
                input: undefined,
                path: ["activities", i, "fields", field],
                message: `required: merge_by lists ${field}, and Ortto finds the person by it`,
              });
        }
      }),
    );
}

/** `activities.0.attributes.bol:cm:account-owner`; an odd key (empty, or with dots or spaces) is quoted. */
function formatPath(segments: PropertyKey[]): string {
  return segments.map((s) => (typeof s === "string" && (s === "" || /[.\s]/.test(s)) ? JSON.stringify(s) : String(s))).join(".") || "body";
}

/** A zod issue, reduced to what the error envelope shows: where, and which rule. Paths are relative to the request body. */
export function describeIssue(issue: z.core.$ZodIssue): { path: string; message: string } {
  const path = issue.path;
  if (issue.code === "unrecognized_keys") {
    const parent = path.at(-1);
    const what = parent === "attributes" ? "attribute" : parent === "fields" ? "person field" : "property";
    const where =
      parent === "attributes" ? " in the catalogue for this activity" : parent === "fields" ? " as browser-settable in the catalogue" : "";
    return {
      path: formatPath([...path, issue.keys[0] ?? ""]),
      message: `unknown ${what}${issue.keys.length > 1 ? `s ${issue.keys.join(", ")}` : ` ${issue.keys[0]}`}: not declared${where}`,
    };
  }
  if (issue.code === "invalid_type" && issue.input === undefined && issue.message === "Invalid input") {
    return { path: formatPath(path), message: `required (expected ${issue.expected})` };
  }
  const message = issue.message === "Invalid input" ? `invalid ${issue.code.replace(/_/g, " ")}` : issue.message;
  return { path: formatPath(path), message };
}
