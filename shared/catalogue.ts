/**
 * The activity catalogue: which activities a browser may send through the relay, each one's
 * attributes with their Ortto kinds, and which person fields a browser may set. The operator
 * edits it in `relay.config.ts`; it mirrors what is defined in Ortto's Activities screen.
 */
import * as z from "zod/mini";
import { ACTIVITY_ID, BUILT_IN_PERSON_FIELDS, CONSENT_FIELDS, FIELD_ID, FIELD_KINDS, type FieldKind, prefixOf } from "./field-ids.ts";

/** Ortto's own limit of attributes per activity. */
export const MAX_ATTRIBUTES = 15;

const kind = z.enum(Object.keys(FIELD_KINDS) as [FieldKind, ...FieldKind[]]);

/** `"text"`, or `{ kind: "single_select", options: ["Free", "Pro"] }` for selects. */
const FieldSpec = z.union([
  kind,
  z.strictObject({
    kind,
    options: z.optional(z.array(z.string().check(z.minLength(1), z.maxLength(255)))),
  }),
]);
export type FieldSpec = z.infer<typeof FieldSpec>;

/** A field spec whose kind travels under the field id's type prefix (`int` for currency …). */
const fieldMap = z.record(z.string().check(z.regex(FIELD_ID, "expected a field id such as str:cm:payment-plan")), FieldSpec).check(
  z.superRefine((fields, ctx) => {
    for (const [id, spec] of Object.entries(fields)) {
      const k = typeof spec === "string" ? spec : spec.kind;
      if (prefixOf(id) !== FIELD_KINDS[k]) {
        ctx.issues.push({
          code: "custom",
          input: spec,
          path: [id],
          message: `a ${k} field travels as ${FIELD_KINDS[k]}, so its id must start with ${FIELD_KINDS[k]}:`,
        });
      }
    }
  }),
);

export const ActivityDefinition = z.strictObject({
  /** The activity's name in Ortto ("Logged in"); the feed reads "Chris Smith logged in". */
  name: z.string().check(z.minLength(1), z.maxLength(100)),
  attributes: fieldMap,
});
export type ActivityDefinition = z.infer<typeof ActivityDefinition>;

/**
 * One site of a multi-site deployment: the origins it posts from, the name of the secret
 * holding its own Ortto key (so each data source's key can be rotated alone, as Ortto advises),
 * and optionally the activities it may send.
 */
export const Site = z.strictObject({
  name: z.string().check(z.regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "expected a lower-case slug such as shop")),
  origins: z
    .array(
      z
        .string()
        .check(
          z.regex(/^https?:\/\/(\*\.)?[a-z0-9.-]+(:\d+)?$/, "expected an origin such as https://shop.example or https://*.shop.example"),
        ),
    )
    .check(z.minLength(1)),
  keySecret: z.string().check(z.regex(/^[A-Z][A-Z0-9_]{0,63}$/, "expected the name of a secret such as ORTTO_KEY_SHOP")),
  activities: z.optional(z.array(z.string().check(z.regex(ACTIVITY_ID, "expected an activity id such as act:cm:logged-in")))),
});
export type Site = z.infer<typeof Site>;

export const Catalogue = z.strictObject({
  activities: z.record(z.string().check(z.regex(ACTIVITY_ID, "expected an activity id such as act:cm:logged-in")), ActivityDefinition),
  /**
   * Person fields a browser may set. Built-in fields need no kind (`"str::first": true`);
   * custom ones (`str:cm:company`) declare theirs. Consent fields are refused here unless
   * `allowConsentFields` is set, so a page cannot unsubscribe someone by accident.
   */
  personFields: z.record(
    z.string().check(z.regex(FIELD_ID, "expected a person field id such as str::first")),
    z.union([z.literal(true), FieldSpec]),
  ),
  allowConsentFields: z.optional(z.boolean()),
  /** Several sites with their own keys in one deployment; ALLOWED_ORIGINS + ORTTO_API_KEY stay the default site. */
  sites: z.optional(z.array(Site)),
});
export type CatalogueInput = z.input<typeof Catalogue>;

/** A checked catalogue, with every person field's kind resolved. */
export interface ResolvedCatalogue {
  activities: Record<string, ActivityDefinition>;
  personFields: Record<string, FieldSpec>;
  allowConsentFields?: boolean;
  sites?: Site[];
}

export function specKind(spec: FieldSpec): FieldKind {
  return typeof spec === "string" ? spec : spec.kind;
}
export function specOptions(spec: FieldSpec): readonly string[] | undefined {
  return typeof spec === "string" ? undefined : spec.options;
}

/**
 * Checks an operator's catalogue and resolves built-in person fields to their kinds.
 * Throws with every problem listed, so a bad config fails at build/start, not per request.
 */
export function defineCatalogue<const C extends CatalogueInput>(input: C): C & ResolvedCatalogue {
  const parsed = Catalogue.safeParse(input);
  const problems: string[] = parsed.success
    ? []
    : parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.code === "invalid_key" ? i.issues[0]?.message : i.message}`);
  const personFields: Record<string, FieldSpec> = {};
  if (parsed.success) {
    for (const [id, spec] of Object.entries(parsed.data.personFields)) {
      const builtIn = (BUILT_IN_PERSON_FIELDS as Record<string, FieldKind>)[id];
      const consent = (CONSENT_FIELDS as Record<string, FieldKind>)[id];
      if (consent && !parsed.data.allowConsentFields) {
        problems.push(`personFields.${id}: consent fields are not browser-settable unless allowConsentFields is true`);
      } else if (spec === true) {
        const known = builtIn ?? consent;
        if (known) personFields[id] = known;
        else problems.push(`personFields.${id}: a custom person field needs its kind, e.g. "text"`);
      } else if (prefixOf(id) !== FIELD_KINDS[specKind(spec)]) {
        problems.push(`personFields.${id}: a ${specKind(spec)} field's id must start with ${FIELD_KINDS[specKind(spec)]}:`);
      } else {
        personFields[id] = spec;
      }
    }
  }
  const names = new Set<string>(["default"]);
  for (const [i, site] of (parsed.success ? (parsed.data.sites ?? []) : []).entries()) {
    if (names.has(site.name))
      problems.push(`sites.${i}.name: ${site.name} is taken (names are unique, and "default" is the ALLOWED_ORIGINS site)`);
    names.add(site.name);
    for (const id of site.activities ?? []) {
      if (!parsed.data?.activities[id]) problems.push(`sites.${i}.activities: ${id} is not in the catalogue`);
    }
  }
  if (problems.length) throw new Error(`Invalid relay catalogue:\n  ${problems.join("\n  ")}`);
  return { ...input, personFields } as C & ResolvedCatalogue;
}
