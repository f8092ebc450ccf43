/**
 * The activity catalogue: which activities a browser may send through the relay, each one's
 * attributes with their Ortto kinds, and which person fields a browser may set. The operator
 * edits it in `relay.config.ts`; it mirrors what is defined in Ortto's Activities screen.
 */
import * as z from "zod/mini";
import {
  ACTIVITY_ID,
  BUILT_IN_PERSON_FIELDS,
  CONSENT_FIELDS,
  FIELD_ID,
  FIELD_KINDS,
  type FieldKind,
  FRIENDLY_NAME,
  friendlyName,
  prefixOf,
  templateName,
} from "./field-ids.ts";
import { isTimeZone } from "./ortto-types.ts";

/** The form of an IANA zone name (`Australia/Sydney`, `UTC`, `Etc/GMT+5`), not an offset. */
const ZONE_NAME = /^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$/;

/** Ortto's own limit of attributes per activity. */
export const MAX_ATTRIBUTES = 15;

const kind = z.enum(Object.keys(FIELD_KINDS) as [FieldKind, ...FieldKind[]]);

/**
 * Where the relay itself takes an attribute's value from, so that the page need not send it and
 * cannot forge it (worker/intake/edge.ts), and the kinds each can fill.
 */
export const EDGE_SOURCES = {
  browser: { from: "the browser's name, parsed from the User-Agent (Chrome, Safari …)", kinds: ["text", "long_text", "single_select"] },
  os: { from: "the operating system, parsed from the User-Agent (Windows, iOS …)", kinds: ["text", "long_text", "single_select"] },
  device: { from: "the device type, parsed from the User-Agent (desktop, mobile, tablet, tv)", kinds: ["text", "single_select"] },
  page_url: { from: "the page that sent the request: its Referer header, else its Origin", kinds: ["url", "text", "long_text"] },
  country: { from: "the visitor's country code, from Cloudflare (request.cf.country: AU)", kinds: ["text", "single_select"] },
  region: { from: "the visitor's region, from Cloudflare (request.cf.region)", kinds: ["text", "single_select"] },
  city: { from: "the visitor's city, from Cloudflare (request.cf.city)", kinds: ["text", "single_select"] },
} as const satisfies Record<string, { from: string; kinds: readonly FieldKind[] }>;
export type EdgeSource = keyof typeof EDGE_SOURCES;

/**
 * `"text"`, or an object: `{ kind: "single_select", options: ["Free", "Pro"] }` for selects, and
 * for any kind the tracking plan's details — a friendly `name` (default: the camelCase of the id's
 * last part), a `description` (the typings' JSDoc), `required`, a `source` the relay fills it from,
 * and for dates the `timezone` a plain `"2026-12-24"` is in.
 */
const FieldSpec = z.union([
  kind,
  z.strictObject({
    kind,
    options: z.optional(z.array(z.string().check(z.minLength(1), z.maxLength(255)))),
    name: z.optional(
      z.string().check(z.regex(FRIENDLY_NAME, "expected a friendly name such as orderTotal (a letter, then letters, digits or _)")),
    ),
    description: z.optional(z.string().check(z.maxLength(500))),
    required: z.optional(z.boolean()),
    source: z.optional(z.enum(Object.keys(EDGE_SOURCES) as [EdgeSource, ...EdgeSource[]])),
    // Only its form here: ICU's time zone data costs a cold start ~25 ms on first use, so the worker
    // does not load it to check its own config; `npm run build` and the tests check the zone itself
    // (checkTimeZones).
    timezone: z.optional(z.string().check(z.regex(ZONE_NAME, "expected an IANA time zone such as Australia/Sydney (not a UTC offset)"))),
    /** Its name in Ortto ("Payment plan"), from which Ortto derives the id; default: the id's last part in words. */
    orttoName: z.optional(z.string().check(z.minLength(1), z.maxLength(255))),
    /** Ortto's "map value to CDP": the person field an attribute's value also updates (`str::first`, `str:cm:company`). */
    mapTo: z.optional(z.string().check(z.regex(FIELD_ID, "expected a person field id such as str:cm:company"))),
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
  /** What it records and when it is sent: the typings' JSDoc and the plan's table. */
  description: z.optional(z.string().check(z.maxLength(1000))),
  /**
   * Ortto's custom display of the activity in its feed, e.g. `Order number {{attribute.order_number}}
   * placed` (attributes named in lower case with underscores); the emulator's feed renders it.
   */
  display: z.optional(z.string().check(z.minLength(1), z.maxLength(1000))),
  /** Ortto's icon (`icon_id`) for the feed and filters; `npm run plan -- push` sends it (default happy-illustration). */
  icon: z.optional(z.string().check(z.regex(/^[a-z0-9][a-z0-9-]{0,63}$/, "expected an Ortto icon id such as happy-illustration"))),
  /** Ortto's "track as touch": the activity updates the person's "Last seen" (an action the person took). */
  touch: z.optional(z.boolean()),
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
/** The spec's own details (name, description, required, source, timezone), or none for a bare kind. */
export function specDetails(spec: FieldSpec): Exclude<FieldSpec, string> | undefined {
  return typeof spec === "string" ? undefined : spec;
}

/**
 * The catalogue's date time zones that this runtime's ICU does not know (`defineCatalogue` checks
 * only their form, to keep ICU out of the worker's start). Run by the build and the tests.
 */
export function checkTimeZones(catalogue: ResolvedCatalogue): string[] {
  const problems: string[] = [];
  const check = (where: string, fields: Record<string, FieldSpec>) => {
    for (const [id, spec] of Object.entries(fields)) {
      const zone = specDetails(spec)?.timezone;
      if (zone !== undefined && !isTimeZone(zone))
        problems.push(`${where}.${id}.timezone: ${zone} is not an IANA time zone this runtime knows`);
    }
  };
  for (const [id, definition] of Object.entries(catalogue.activities)) check(`activities.${id}.attributes`, definition.attributes);
  check("personFields", catalogue.personFields);
  return problems;
}

/** `{{attribute.order_number}}` in a display template. */
export const TEMPLATE_VARIABLE = /\{\{\s*attribute\.([A-Za-z0-9_]+)\s*\}\}/g;

/** The snippet's person field shorthands (worker/intake/shorthand.ts expands them first), both ways. */
const SNIPPET_NAMES: Readonly<Record<string, string>> = {
  "str::email": "email",
  "str::first": "first",
  "str::last": "last",
  "str::ei": "ei",
  "phn::phone": "phone",
};
const SNIPPET_SHORTHANDS: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(SNIPPET_NAMES).map(([id, name]) => [name, id]),
);

/**
 * The attributes the snippet's automatic page views send (`page-url`, `page-title`, `referrer`,
 * expanded by worker/intake/shorthand.ts): a page always writes them, so none may have a `source`.
 */
const SNIPPET_PAGE_VIEW_ATTRIBUTES: readonly string[] = ["str:cm:page-url", "str:cm:page-title", "str:cm:referrer"];
/**
 * The names the snippet sends them by (`u`, `t`, `r`; a script cached from before: `page-url` …),
 * which the relay expands in every activity before friendly names: no other attribute may be named so.
 */
export const SNIPPET_PAGE_VIEW_SHORTHANDS = [
  ["u", "str:cm:page-url"],
  ["t", "str:cm:page-title"],
  ["r", "str:cm:referrer"],
  ["page-url", "str:cm:page-url"],
  ["page-title", "str:cm:page-title"],
  ["referrer", "str:cm:referrer"],
] as const;

/** The tracking plan's own rules: friendly names unique and usable, sources and time zones where they fit. */
function planProblems(where: string, fields: Record<string, FieldSpec>, person: boolean): string[] {
  const problems: string[] = [];
  const names = new Map<string, string>();
  for (const [id, spec] of Object.entries(fields)) {
    const details = specDetails(spec);
    const k = specKind(spec);
    const name = details?.name ?? friendlyName(id);
    if (!FRIENDLY_NAME.test(name)) problems.push(`${where}.${id}: its default friendly name ${name} is not an identifier; give it a name`);
    const taken = names.get(name);
    if (taken !== undefined) problems.push(`${where}.${id}: the friendly name ${name} is taken by ${taken}; give one of them another name`);
    names.set(name, id);
    if (details?.timezone !== undefined && k !== "date") problems.push(`${where}.${id}: a timezone is for date attributes only`);
    // The snippet's shorthands (`email` … `phone`) always mean Ortto's built-in fields, and the
    // snippet holds events until the identity has `email`, `ei` or `phone`: those names stay theirs.
    // So do the page views' attribute shorthands (`u` … `referrer`), which the relay expands in every activity.
    const shorthand = person
      ? Object.hasOwn(SNIPPET_SHORTHANDS, name) && SNIPPET_SHORTHANDS[name]
      : SNIPPET_PAGE_VIEW_SHORTHANDS.find(([short]) => short === name)?.[1];
    if (shorthand && shorthand !== id)
      problems.push(`${where}.${id}: the friendly name ${name} is the snippet's shorthand for ${shorthand}; give it another name`);
    const own = SNIPPET_NAMES[id];
    if (person && own !== undefined && Object.hasOwn(SNIPPET_NAMES, id) && own !== name)
      problems.push(`${where}.${id}: keeps its name ${own} (the snippet's shorthand, by which it knows who the visitor is)`);
    if (person && details?.mapTo !== undefined)
      problems.push(`${where}.${id}: mapTo (Ortto's "map value to CDP") is for activity attributes`);
    if (person && (details?.source !== undefined || details?.required !== undefined))
      problems.push(`${where}.${id}: person fields come from the page (identify); source and required are for activity attributes`);
    if (details?.source !== undefined) {
      if (!person && SNIPPET_PAGE_VIEW_ATTRIBUTES.includes(id))
        problems.push(
          `${where}.${id}: the snippet's automatic page views send this attribute (data-pageviews), so the relay cannot fill it (every page view would be refused); give the relay-filled attribute another id`,
        );
      const source = EDGE_SOURCES[details.source];
      if (!(source.kinds as readonly FieldKind[]).includes(k))
        problems.push(`${where}.${id}: source ${details.source} fills ${source.kinds.join(", ")} attributes, not ${k}`);
      if (details.required) problems.push(`${where}.${id}: an attribute the relay fills (source) is not required from the page`);
    }
  }
  return problems;
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
  if (parsed.success) {
    for (const [id, definition] of Object.entries(parsed.data.activities)) {
      problems.push(...planProblems(`activities.${id}.attributes`, definition.attributes, false));
      const known = new Set(Object.keys(definition.attributes).map(templateName));
      for (const [, variable] of (definition.display ?? "").matchAll(TEMPLATE_VARIABLE)) {
        if (!known.has(variable as string))
          problems.push(
            `activities.${id}.display: {{attribute.${variable}}} is not an attribute of this activity (it has ${[...known].join(", ") || "none"})`,
          );
      }
    }
    problems.push(...planProblems("personFields", personFields, true));
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
