/**
 * The emulated account's definitions, through Ortto's definitions API (../shared/ortto-api.md):
 *
 *   POST /v1/definitions/activity/create   a definition; Ortto derives the activity's id from its name
 *                                          and each attribute's from its name and display type
 *   PUT  /v1/definitions/activity/modify   the same body with `activity_field_id` (and `state`); it
 *                                          replaces the definition, attributes left out are gone
 *   POST /v1/person/custom-field/create    `{ type, name, values?, track_changes? }`, at most 100
 *   POST /v1/person/custom-field/get       `{ fields: [{ field: { id, name, display_type, liquid_name }, tracked_value }] }`
 *   POST /v1/instance-schema/get           `{ activities: [definition with activity_field_id and attribute_field_id] }`
 *
 * Not confirmed in Ortto's reference, so chosen here and said so: the create answer (the stored
 * definition), modify replacing rather than patching (the stricter reading: push therefore always
 * sends every attribute the account has), and the read of activity definitions. Ortto documents no
 * read endpoint for them; community SDKs call `POST /v1/instance-schema/get` with
 * `{"namespaces":["cm"]}`, whose answer's shape is unpublished: this one is the emulator's own, and
 * `npm run plan` falls back to its lock file when an account answers it otherwise.
 */
import { Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import * as z from "zod/mini";
import {
  type ActivityBody,
  activityIdFor,
  DISPLAY_TYPES,
  type DisplayType,
  fieldIdFor,
  KIND_OF_DISPLAY_TYPE,
  MAX_CUSTOM_FIELDS,
  orttoSlug,
} from "../shared/definitions.ts";
import { MAX_ATTRIBUTES } from "../shared/index.ts";
import { type StoredDefinition, type StoredField, state } from "./store.ts";

const displayType = z.enum(Object.values(DISPLAY_TYPES) as [DisplayType, ...DisplayType[]]);
const name = z.string().check(z.trim(), z.minLength(1), z.maxLength(255));

const Definition = z.object({
  name,
  icon_id: z.optional(z.string()),
  track_conversion_value: z.optional(z.boolean()),
  touch: z.optional(z.boolean()),
  filterable: z.optional(z.boolean()),
  visible_in_feeds: z.optional(z.boolean()),
  display_style: z.optional(
    z.object({
      type: z.enum(["activity", "activity_attribute", "activity_template"]),
      title: z.optional(z.string()),
      attribute_name: z.optional(z.string()),
      attribute_field_id: z.optional(z.string()),
    }),
  ),
  attributes: z.optional(
    z
      .array(z.object({ name, display_type: displayType, field_id: z.optional(z.string()) }))
      .check(z.maxLength(MAX_ATTRIBUTES, `An activity has at most ${MAX_ATTRIBUTES} attributes`)),
  ),
});
const Modify = z.extend(Definition, { activity_field_id: z.string(), state: z.optional(z.string()) });

const CustomField = z.object({
  type: displayType,
  name,
  values: z.optional(z.array(z.string())),
  track_changes: z.optional(z.boolean()),
});

/** Ortto's error envelope. */
const envelope = (code: number, error: string) => ({ request_id: crypto.randomUUID(), code, error });

class Refused extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
  ) {
    super(message);
  }
}

function parse<T>(schema: z.ZodMiniType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new Refused(400, `${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`);
}

/** A definition as the account keeps it: defaults filled, every attribute with the id Ortto derives. */
function stored(id: string, input: z.infer<typeof Definition>): StoredDefinition {
  const attributes = (input.attributes ?? []).map((a) => ({
    name: a.name,
    display_type: a.display_type,
    field_id: a.field_id ?? "",
    attribute_field_id: fieldIdFor(KIND_OF_DISPLAY_TYPE[a.display_type], a.name),
  }));
  const ids = new Set<string>();
  for (const a of attributes) {
    if (!orttoSlug(a.name)) throw new Refused(400, `Attribute name "${a.name}" has no letters or digits`);
    if (ids.has(a.attribute_field_id)) throw new Refused(400, `Duplicate attribute name "${a.name}"`);
    ids.add(a.attribute_field_id);
  }
  const body: ActivityBody = {
    name: input.name,
    icon_id: input.icon_id ?? "happy-illustration",
    track_conversion_value: input.track_conversion_value ?? false,
    touch: input.touch ?? false,
    filterable: input.filterable ?? true,
    visible_in_feeds: input.visible_in_feeds ?? true,
    display_style:
      input.display_style?.title !== undefined
        ? { type: input.display_style.type, title: input.display_style.title }
        : { type: input.display_style?.type ?? "activity" },
    attributes,
  };
  return { ...body, attributes, activity_field_id: id, state: "live" };
}

function nameTaken(input: { name: string }, except?: string): boolean {
  const wanted = input.name.trim().toLowerCase();
  return [...state.definitions.values()].some((d) => d.activity_field_id !== except && d.name.trim().toLowerCase() === wanted);
}

/** The account's request budget (`maxRps` of the fault settings) for this API: Ortto answers 429 with `try-in-seconds`. */
function overBudget(now: number): boolean {
  const second = Math.floor(now / 1000);
  const count = (state.definitionSeconds.get(second) ?? 0) + 1;
  state.definitionSeconds.set(second, count);
  for (const old of state.definitionSeconds.keys()) if (old < second - 60) state.definitionSeconds.delete(old);
  return state.faults.maxRps > 0 && count > state.faults.maxRps;
}

export const account = new Hono();

const PATHS = [
  "/v1/definitions/activity/create",
  "/v1/definitions/activity/modify",
  "/v1/instance-schema/get",
  "/v1/person/custom-field/create",
  "/v1/person/custom-field/get",
];

account.use(async (c, next) => {
  if (!PATHS.includes(c.req.path)) return next();
  // Every body is read, even where it is not needed: a response sent while a caller still streams the
  // body fails that caller's stream (Hono keeps the text for the handler's json()).
  await c.req.text().catch(() => "");
  if (overBudget(Date.now()))
    return c.json({ error: { code: "rate-limit", message: "rate limit", "try-in-seconds": state.faults.tryInSeconds } }, 429);
  if (!c.req.header("x-api-key")?.trim()) return c.json(envelope(401, "Missing or invalid X-Api-Key header"), 401);
  await next();
});

account.onError((err, c) => {
  if (err instanceof Refused) return c.json(envelope(err.status, err.message), err.status);
  throw err;
});

const body = (c: { req: { json: () => Promise<unknown> } }) =>
  c.req.json().catch(() => {
    throw new Refused(400, "Request body is not valid JSON");
  });

account.post("/v1/definitions/activity/create", async (c) => {
  const input = parse(Definition, await body(c));
  const id = activityIdFor(input.name);
  if (id === "act:cm:") throw new Refused(400, `Activity name "${input.name}" has no letters or digits`);
  if (state.definitions.has(id) || nameTaken(input)) throw new Refused(400, `An activity named "${input.name}" already exists`);
  const definition = stored(id, input);
  state.definitions.set(id, definition);
  return c.json(definition);
});

account.put("/v1/definitions/activity/modify", async (c) => {
  const input = parse(Modify, await body(c));
  const id = input.activity_field_id;
  if (!state.definitions.has(id)) throw new Refused(404, `No activity ${id} in this account`);
  if (nameTaken(input, id)) throw new Refused(400, `An activity named "${input.name}" already exists`);
  // The id stays when the name changes, as in Ortto's app ("you will be able to edit the activity name later").
  const definition = stored(id, input);
  state.definitions.set(id, definition);
  return c.json(definition);
});

account.post("/v1/instance-schema/get", (c) => c.json({ activities: [...state.definitions.values()] }));

account.post("/v1/person/custom-field/create", async (c) => {
  const input = parse(CustomField, await body(c));
  const id = fieldIdFor(KIND_OF_DISPLAY_TYPE[input.type], input.name);
  const wanted = input.name.trim().toLowerCase();
  if (state.customFields.has(id) || [...state.customFields.values()].some((f) => f.name.trim().toLowerCase() === wanted))
    throw new Refused(400, `A field named "${input.name}" already exists`);
  if (state.customFields.size >= MAX_CUSTOM_FIELDS) throw new Refused(400, `An account has at most ${MAX_CUSTOM_FIELDS} custom fields`);
  const field: StoredField = {
    id,
    name: input.name,
    display_type: input.type,
    liquid_name: orttoSlug(input.name).replace(/-/g, "_"),
    ...(input.values ? { values: input.values } : {}),
    track_changes: input.track_changes ?? false,
  };
  state.customFields.set(id, field);
  return c.json({
    field: { id, name: field.name, display_type: field.display_type, liquid_name: field.liquid_name },
    tracked_value: field.track_changes,
  });
});

account.post("/v1/person/custom-field/get", (c) =>
  c.json({
    fields: [...state.customFields.values()].map((f) => ({
      field: { id: f.id, name: f.name, display_type: f.display_type, liquid_name: f.liquid_name },
      tracked_value: f.track_changes,
    })),
  }),
);
