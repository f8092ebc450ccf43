/**
 * `npm run plan -- --json-schema`: every activity's attributes as JSON Schema (draft 2020-12), for
 * other tools (a server's validator, a form builder): `raw` by Ortto id as Ortto takes them (currency
 * × 1000, dates as objects), `friendly` by the names a page may write (the relay converts them,
 * worker/intake/friendly.ts), and the person fields a page may set, both ways. Attributes the relay fills are
 * in neither: a page may not send them.
 */
import * as z from "zod/mini";
import type { ResolvedCatalogue } from "../../shared/catalogue.ts";
import { valueSchema } from "../../shared/ortto-types.ts";
import { type PlannedField, trackingPlan } from "../../shared/plan.ts";

/** What a page may write under a friendly name: the raw value, or what the relay converts to it. */
function friendlyValue(field: PlannedField): z.ZodMiniType {
  const raw = valueSchema(field.kind, field.options);
  switch (field.kind) {
    case "decimal":
    case "currency":
      return z.number().check(z.describe(`${field.kind}: a number with at most 3 decimals (the relay sends it × 1000)`));
    case "date":
      return z.union([z.string().check(z.describe("a day, 2026-12-24, or an ISO date-time")), raw]);
    case "datetime":
      return z.union([raw, z.number().check(z.describe("epoch milliseconds"))]);
    case "phone":
      return z.union([z.string().check(z.describe("digits, spaces, dashes, dots, brackets and a leading +")), raw]);
    case "place":
      return z.union([z.string(), raw]);
    default:
      return raw;
  }
}

function objectOf(
  fields: PlannedField[],
  key: (f: PlannedField) => string,
  value: (f: PlannedField) => z.ZodMiniType,
  description: string,
) {
  const shape: Record<string, z.ZodMiniType> = {};
  for (const f of fields) {
    const v = f.description ? value(f).check(z.describe(f.description)) : value(f);
    shape[key(f)] = f.required ? v : z.optional(v);
  }
  return z.strictObject(shape).check(z.describe(description));
}

export function jsonSchema(catalogue: ResolvedCatalogue): Record<string, unknown> {
  const plan = trackingPlan(catalogue);
  const defs: Record<string, unknown> = {};
  const options = { target: "draft-2020-12", unrepresentable: "any", io: "input" } as const;
  for (const activity of plan.activities.values()) {
    const page = activity.attributes.filter((a) => a.source === undefined);
    defs[`${activity.id}/friendly`] = z.toJSONSchema(
      objectOf(page, (f) => f.name, friendlyValue, `${activity.name}: attributes by friendly name, as a page writes them`),
      options,
    );
    defs[`${activity.id}/raw`] = z.toJSONSchema(
      objectOf(
        page,
        (f) => f.id,
        (f) => valueSchema(f.kind, f.options),
        `${activity.name}: attributes by Ortto id, as Ortto takes them`,
      ),
      options,
    );
  }
  defs["person/friendly"] = z.toJSONSchema(
    objectOf(plan.personFields, (f) => f.name, friendlyValue, "identify's person fields by friendly name, as a page writes them"),
    options,
  );
  defs["person/raw"] = z.toJSONSchema(
    objectOf(
      plan.personFields,
      (f) => f.id,
      (f) => valueSchema(f.kind, f.options),
      "Person fields by Ortto id (an activity's fields)",
    ),
    options,
  );
  for (const def of Object.values(defs)) delete (def as Record<string, unknown>).$schema;
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: "The relay's activities (relay.config.ts)",
    description:
      "$defs holds, per activity id, its attributes as a page writes them (/friendly) and as Ortto takes them (/raw); person/friendly and person/raw are the person fields a page may set.",
    $defs: defs,
  };
}
