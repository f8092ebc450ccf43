/**
 * What Ortto does with the body of `POST /v1/activities/create`, as the seed guide describes it,
 * against the activities and custom fields the emulated account defines (emulator/account.ts): an
 * attribute the account does not define is dropped, as Ortto drops it, and listed in the stored
 * activity's `ignored_attributes` for the feed.
 *
 * Whole-request problems (not JSON-shaped, 0 or > 100 activities, unknown activity, mistyped
 * attribute, `created` over 90 days ago) answer 400 and store nothing. Person problems fail only
 * their activity, inside a 200, because Ortto reports them per activity through `person_status`:
 * an unknown or mistyped person field, no identifying field and no person_id, or an unknown
 * person_id answer `{"person_status":"failed","status":"failed"}` (no ids: nobody was touched,
 * nothing stored), since the seed says ingestion "will fail". The reason goes to the request log.
 */
import { CONVERSION_VALUE, KIND_OF_DISPLAY_TYPE } from "../shared/definitions.ts";
import {
  type ActivitiesResponse,
  type ActivityResult,
  BUILT_IN_PERSON_FIELDS,
  CONSENT_FIELDS,
  type FieldKind,
  IDENTIFYING_FIELDS,
  MAX_ACTIVITIES,
  MAX_AGE_MS,
  valueSchema,
} from "../shared/index.ts";
import { orttoId, type Person, type StoredActivity, type StoredDefinition, state } from "./store.ts";

/** Ortto's limit: 50 events per activity per contact per 24 h. */
export const MAX_EVENTS_PER_DAY = 50;
const DAY_MS = 24 * 60 * 60 * 1000;

/** An error that ends the whole request, in Ortto's envelope. */
export class OrttoError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details?: { status: string; error: string }[],
  ) {
    super(message);
  }
}

type Schema = ReturnType<typeof valueSchema>;

/** Each attribute's kind by its id, from the account's definition (and the conversion value when it tracks one). */
export function attributeKinds(definition: StoredDefinition): Map<string, FieldKind> {
  const kinds = new Map<string, FieldKind>(definition.attributes.map((a) => [a.attribute_field_id, KIND_OF_DISPLAY_TYPE[a.display_type]]));
  if (definition.track_conversion_value) kinds.set(CONVERSION_VALUE, "currency");
  return kinds;
}

/** A definition's value schemas, built once per stored definition (create and modify store a new one). */
const schemas = new WeakMap<StoredDefinition, Map<string, Schema>>();
function attributeSchemas(id: string): Map<string, Schema> | undefined {
  const definition = state.definitions.get(id);
  if (!definition) return undefined;
  let built = schemas.get(definition);
  if (!built) {
    built = new Map([...attributeKinds(definition)].map(([attr, kind]) => [attr, valueSchema(kind)]));
    schemas.set(definition, built);
  }
  return built;
}

/**
 * The person field the emulated account has: Ortto's built-in and consent fields, plus the custom
 * fields created through `/v1/person/custom-field/create` (a select checks its values).
 */
const builtInSchemas = new Map<string, Schema>(
  Object.entries<FieldKind>({ ...BUILT_IN_PERSON_FIELDS, ...CONSENT_FIELDS }).map(([id, kind]) => [id, valueSchema(kind)]),
);
const customSchemas = new WeakMap<object, Schema>();
function personFieldSchema(id: string): Schema | undefined {
  const builtIn = builtInSchemas.get(id);
  if (builtIn) return builtIn;
  const custom = state.customFields.get(id);
  if (!custom) return undefined;
  let schema = customSchemas.get(custom);
  if (!schema) {
    schema = valueSchema(KIND_OF_DISPLAY_TYPE[custom.display_type], custom.values);
    customSchemas.set(custom, schema);
  }
  return schema;
}

/** The first problem a value schema finds, with the path inside the value when nested. */
function typeProblem(schema: Schema, value: unknown): string | undefined {
  if (value === null) return undefined; // Ortto stores null as "no value" (its "Has any value" note)
  const result = schema.safeParse(value);
  if (result.success) return undefined;
  const issue = result.error.issues[0];
  return issue ? `${issue.path.length ? `${issue.path.join(".")}: ` : ""}${issue.message}` : "invalid value";
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** An activity that passed the whole-request checks, ready to be attached to a person. */
interface Checked {
  activity_id: string;
  person_id?: string;
  created?: string;
  key?: string;
  fields: Record<string, unknown>;
  attributes: Record<string, unknown>;
  ignored_attributes: string[];
  location?: unknown;
  /** Why the person cannot be resolved: the activity then fails with person_status "failed". */
  personProblem?: string;
}

function check(input: unknown, now: number, problems: string[]): Checked | undefined {
  const fail = (message: string) => {
    problems.push(message);
    return undefined;
  };
  if (!isObject(input)) return fail("Activity must be a JSON object");
  const id = input.activity_id;
  const attributeSchema = typeof id === "string" ? attributeSchemas(id) : undefined;
  if (!attributeSchema) return fail(typeof id === "string" ? `Unknown activity ${id}` : "activity_id is required");
  if (input.person_id !== undefined && typeof input.person_id !== "string") return fail("person_id must be a string");
  if (input.key !== undefined && typeof input.key !== "string") return fail("key must be a string");
  if (input.fields !== undefined && !isObject(input.fields)) return fail("fields must be a JSON object");
  if (input.attributes !== undefined && !isObject(input.attributes)) return fail("attributes must be a JSON object");
  if (input.location !== undefined && !isObject(input.location)) return fail("location must be a JSON object");

  let created: string | undefined;
  if (input.created !== undefined) {
    const ms = typeof input.created === "string" ? Date.parse(input.created) : Number.NaN;
    if (!Number.isFinite(ms)) return fail("Created date is not a valid ISO 8601 date and time");
    if (ms < now - MAX_AGE_MS) return fail("Created date is more than 90 days ago");
    created = new Date(ms).toISOString();
  }

  // Unknown attributes are dropped silently; declared ones must unmarshal into their type.
  const attributes: Record<string, unknown> = {};
  const ignored: string[] = [];
  for (const [attr, value] of Object.entries(input.attributes ?? {})) {
    const schema = attributeSchema.get(attr);
    if (!schema) {
      ignored.push(attr);
      continue;
    }
    const problem = typeProblem(schema, value);
    if (problem) return fail(`Attribute ${attr} of ${id} has the wrong type: ${problem}`);
    attributes[attr] = value;
  }

  const fields = input.fields ?? {};
  let personProblem: string | undefined;
  for (const [field, value] of Object.entries(fields)) {
    const schema = personFieldSchema(field);
    personProblem = schema ? typeProblem(schema, value) : "field does not exist";
    if (personProblem) {
      personProblem = `Person field ${field}: ${personProblem}`;
      break;
    }
  }
  return {
    activity_id: id as string,
    person_id: input.person_id as string | undefined,
    created,
    key: input.key as string | undefined,
    fields,
    attributes,
    ignored_attributes: ignored,
    location: input.location,
    personProblem,
  };
}

/** The value under which a person is found again: emails ignore case, phones keep their digits. */
function identity(field: string, value: unknown): string | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value === "string") return `${field}:${field === "str::email" ? value.trim().toLowerCase() : value.trim()}`;
  if (isObject(value) && field.startsWith("phn:"))
    return `${field}:${`${value.c ?? ""}${value.n ?? ""}${value.phone ?? ""}`.replace(/\D/g, "")}`;
  return `${field}:${JSON.stringify(value)}`;
}

/**
 * Finds or creates the activity's person. `person_id` must name a known person ("matched");
 * otherwise the merge fields are tried in order: a hit is "merged" (and its fields updated),
 * a miss "created". No identifying field at all cannot be attached to anyone: "failed".
 */
function resolvePerson(a: Checked, mergeBy: readonly string[], now: number): { person?: Person; status: string; problem?: string } {
  if (a.personProblem) return { status: "failed", problem: a.personProblem };
  let person: Person | undefined;
  let status: string;
  if (a.person_id !== undefined) {
    person = state.people.get(a.person_id);
    if (!person) return { status: "failed", problem: `No person with person_id ${a.person_id}` };
    status = "matched";
  } else {
    const keys = mergeBy.map((f) => identity(f, a.fields[f])).filter((k): k is string => k !== undefined);
    if (!keys.length) return { status: "failed", problem: `No identifying person field (${mergeBy.join(", ")}) and no person_id` };
    const known = keys.map((k) => state.identities.get(k)).find((id) => id !== undefined);
    person = known === undefined ? undefined : state.people.get(known);
    status = person ? "merged" : "created";
    if (!person) {
      person = { person_id: orttoId(), fields: {}, created_at: new Date(now).toISOString() };
      state.people.set(person.person_id, person);
    }
  }
  Object.assign(person.fields, a.fields);
  // Later activities may find this person by any identifying value it has been given.
  for (const field of new Set([...mergeBy, ...IDENTIFYING_FIELDS])) {
    const k = identity(field, person.fields[field]);
    if (k !== undefined && !state.identities.has(k)) state.identities.set(k, person.person_id);
  }
  return { person, status };
}

/** Ingests one create request's body. Throws OrttoError for whole-request failures. */
export function ingest(body: unknown, apiKey: string, now: number): { response: ActivitiesResponse; failures: string[] } {
  if (!isObject(body) || !Array.isArray(body.activities))
    throw new OrttoError(400, "Request body must be a JSON object with an activities array");
  const { activities } = body;
  if (activities.length === 0) throw new OrttoError(400, "No activities were provided");
  if (activities.length > MAX_ACTIVITIES) throw new OrttoError(400, `Too many activities: at most ${MAX_ACTIVITIES} per request`);
  if (body.async !== undefined && typeof body.async !== "boolean") throw new OrttoError(400, "async must be a boolean");
  const mergeBy = body.merge_by ?? IDENTIFYING_FIELDS;
  if (!Array.isArray(mergeBy) || !mergeBy.length || mergeBy.some((f) => typeof f !== "string" || !personFieldSchema(f))) {
    throw new OrttoError(400, "merge_by must list known person field ids");
  }

  // Every activity is checked before any is stored: a 400 leaves no partial request behind.
  const problems: string[] = [];
  const checked: Checked[] = [];
  activities.forEach((input, i) => {
    const before = problems.length;
    const a = check(input, now, problems);
    if (a) checked.push(a);
    else problems[before] = `activities[${i}]: ${problems[before]}`;
  });
  if (problems.length) {
    const first = (problems[0] as string).replace(/^activities\[\d+\]: /, "");
    throw new OrttoError(
      400,
      first,
      problems.map((error) => ({ status: "invalid", error })),
    );
  }

  const receivedAt = new Date(now).toISOString();
  const failures: string[] = [];
  const results = checked.map((a, i): ActivityResult => {
    const { person, status: person_status, problem } = resolvePerson(a, mergeBy as string[], now);
    if (!person) {
      failures.push(`activities[${i}]: ${problem}`);
      return { person_status, status: "failed" };
    }
    const created = a.created ?? receivedAt;
    // Ortto merges re-sends of the same key + created pair into the activity it already has.
    const dedupeKey = a.key === undefined ? undefined : `${a.key}\u0000${created}`;
    const existing = dedupeKey === undefined ? undefined : state.byKeyAndCreated.get(dedupeKey);
    if (existing) {
      state.duplicates++;
      return { person_id: existing.person_id, person_status, activity_id: existing.id, status: "ingested" };
    }
    // The 24 h window counts events by when Ortto received them, so back-dated ones count too.
    // The 51st is answered status "failed" (Ortto's only word for an activity it did not
    // record), keeping the person's id and status: the person was still created or merged.
    const recent = state.activities.filter(
      (s) => s.person_id === person.person_id && s.activity_id === a.activity_id && Date.parse(s.received_at) > now - DAY_MS,
    ).length;
    if (recent >= MAX_EVENTS_PER_DAY) {
      failures.push(`activities[${i}]: over ${MAX_EVENTS_PER_DAY} events of ${a.activity_id} for this person in 24 h`);
      return { person_id: person.person_id, person_status, status: "failed" };
    }
    const { personProblem: _, ...kept } = a;
    const stored: StoredActivity = {
      ...kept,
      id: orttoId(),
      person_id: person.person_id,
      person_status,
      created,
      received_at: receivedAt,
      api_key: apiKey,
      async: body.async === true,
    };
    state.activities.push(stored);
    if (dedupeKey !== undefined) state.byKeyAndCreated.set(dedupeKey, stored);
    return { person_id: person.person_id, person_status, activity_id: stored.id, status: "ingested" };
  });

  // With async Ortto answers before ingesting; the emulator ingests at once but answers the same way.
  const response = { activities: body.async === true ? results.map(() => ({ status: "queued", person_status: "queued" })) : results };
  return { response, failures };
}
