/**
 * The snippet's typings for one catalogue: `snippet/src/relay.d.ts` (the hand-written API) with its
 * untyped `track` and `identify` put as the tracking plan's activities, attributes and person
 * fields. Written to `snippet/dist/relay.d.ts` by `scripts/relay-types.mjs` in `npm run build`.
 */
import type { ResolvedCatalogue } from "../shared/catalogue.ts";
import { EDGE_SOURCES } from "../shared/catalogue.ts";

export { checkTimeZones } from "../shared/catalogue.ts";

import type { FieldKind } from "../shared/field-ids.ts";
import { type PlannedActivity, type PlannedField, trackingPlan } from "../shared/plan.ts";

const key = (name: string) => (/^[A-Za-z_$][\w$]*$/.test(name) ? name : JSON.stringify(name));
/** Text for a JSDoc comment: nothing in it may close the comment. */
const doc = (text: string) => text.replace(/\*\//g, "*\\/").replace(/\s*\n\s*/g, " ");

function optionsType(options: readonly string[] | undefined): string {
  return options?.length ? options.map((o) => JSON.stringify(o)).join(" | ") : "string";
}

/** The value an Ortto id takes, as Ortto defines it. */
function orttoType(field: PlannedField): string {
  const kind: FieldKind = field.kind;
  switch (kind) {
    case "integer":
    case "decimal":
    case "currency":
      return "number";
    case "boolean":
      return "boolean";
    case "date":
      return "OrttoDate";
    case "phone":
      return "Phone";
    case "place":
      return "{ name: string }";
    case "single_select":
      return optionsType(field.options);
    case "multi_select":
      return `Array<${optionsType(field.options)}>`;
    case "json":
      return "Record<string, unknown> | unknown[]";
    default:
      return "string";
  }
}

/** The value a friendly name takes: what the relay converts from, and Ortto's own shape where the relay takes that too. */
function friendlyType(field: PlannedField): string {
  switch (field.kind) {
    case "date":
      return "string | OrttoDate";
    case "datetime":
      return "string | number";
    case "phone":
      return "string | Phone";
    case "place":
      return "string | { name: string }";
    default:
      return orttoType(field);
  }
}

const FRIENDLY_NOTES: Partial<Record<FieldKind, string>> = {
  decimal: "A number with at most 3 decimals (the relay sends it × 1000).",
  currency: "An amount with at most 3 decimals, such as 24.99 (the relay sends it × 1000).",
  date: "A day, `2026-12-24`, or an ISO date and time (its day in the time zone).",
  datetime: "An ISO 8601 date and time with a zone, or epoch milliseconds.",
  phone: "A phone number; a string is parsed by Ortto with its country code.",
};

function describeField(field: PlannedField): string {
  const kind = field.options ? `${field.kind}: ${field.options.join(", ")}` : field.kind;
  const zone = field.timezone ? `, in ${field.timezone}` : "";
  return [field.description, FRIENDLY_NOTES[field.kind], `Ortto: \`${field.id}\` (${kind}${zone}).`].filter(Boolean).join(" ");
}

/** The properties of one object type: each field by friendly name, then by Ortto id, all optional. */
function members(fields: PlannedField[], indent: string): string {
  return fields
    .map(
      (f) =>
        `${indent}/** ${doc(describeField(f))} */\n${indent}${key(f.name)}?: ${friendlyType(f)};\n` +
        `${indent}/** \`${f.name}\` in Ortto's id, as Ortto takes it (no conversion). */\n${indent}${key(f.id)}?: ${orttoType(f)};\n`,
    )
    .join("");
}

/** An activity's attributes: optional ones in one object type, each required one as either name. */
function attributesType(activity: PlannedActivity): string {
  const sendable = activity.attributes.filter((a) => a.source === undefined);
  const base = sendable.length ? `{\n${members(sendable, "    ")}  }` : "{}";
  const required = sendable
    .filter((a) => a.required)
    .map((a) => `({ ${key(a.name)}: ${friendlyType(a)} } | { ${key(a.id)}: ${orttoType(a)} })`);
  return [base, ...required].join(" & ");
}

function activityDoc(activity: PlannedActivity): string {
  const filled = activity.edge.map((a) => `\`${a.name}\` (${EDGE_SOURCES[a.source as keyof typeof EDGE_SOURCES].from})`);
  return [
    `${activity.name}${activity.description ? `: ${activity.description}` : "."}`,
    `Ortto: \`${activity.id}\`.`,
    activity.display ? `Shown in Ortto as "${activity.display}".` : "",
    filled.length ? `The relay fills ${filled.join(", ")}.` : "",
  ]
    .filter(Boolean)
    .join(" ");
}

/** The catalogue's declarations: activities by slug and id, and the person fields. */
export function planDeclarations(catalogue: ResolvedCatalogue): string {
  const plan = trackingPlan(catalogue);
  const activities = [...plan.activities.values()]
    .map((a) => {
      const comment = `  /** ${doc(activityDoc(a))} */\n`;
      return `${comment}  ${key(a.slug)}: ${attributesType(a)};\n${comment}  ${key(a.id)}: Activities[${JSON.stringify(a.slug)}];\n`;
    })
    .join("");
  return `/** Ortto's date: a calendar day in a time zone. */
export interface OrttoDate {
  year: number;
  month: number;
  day: number;
  /** An IANA time zone, such as Australia/Sydney. */
  timezone: string;
}

/**
 * The catalogue's activities (relay.config.ts), by slug and by Ortto id, each with the attributes a
 * page may send: by friendly name (converted by the relay) or by Ortto id (sent as it is).
 */
export interface Activities {
${activities}}

/** An activity of the catalogue: its slug (\`logged-in\`) or Ortto id (\`act:cm:logged-in\`). */
export type ActivityName = keyof Activities;

/** \`track\`'s attributes: optional when the activity requires none. */
export type TrackArguments<A extends ActivityName> = {} extends Activities[A] ? [attributes?: Activities[A]] : [attributes: Activities[A]];

/**
 * The person fields the catalogue lets a page set, by friendly name or Ortto id. The email is
 * trimmed; a phone string is parsed by Ortto with its country code.
 */
export interface IdentifyFields {
${members(plan.personFields, "  ")}}
`;
}

const IDENTIFY = /\/\*\*(?:(?!\*\/)[\s\S])*\*\/\nexport interface IdentifyFields \{[\s\S]*?\n\}\n/;
const TRACK = /( *)\/\*\*[^\n]*\*\/\n\1\(command: "track", activityId: string, attributes\?: Record<string, unknown>\): void;\n/;
const HEADER = /^\/\*\*[\s\S]*?\*\/\n/;

/**
 * The generated typings: the hand-written ones with the untyped `IdentifyFields` and `track`
 * replaced. Throws when the hand-written file no longer has them in the expected form, so a change
 * there is noticed in the build rather than shipped untyped.
 */
export function relayTypings(catalogue: ResolvedCatalogue, handWritten: string): string {
  for (const [name, pattern] of [
    ["the IdentifyFields interface", IDENTIFY],
    ["the track overload", TRACK],
    ["the header comment", HEADER],
  ] as const) {
    if (!pattern.test(handWritten)) throw new Error(`snippet/src/relay.d.ts: ${name} is not where scripts/typings.ts expects it`);
  }
  return handWritten
    .replace(
      HEADER,
      `/**
 * Typings of the relay snippet for this site's tracking plan. Generated from relay.config.ts and
 * snippet/src/relay.d.ts by \`npm run build\` (scripts/relay-types.mjs): do not edit.
 */
`,
    )
    .replace(IDENTIFY, () => planDeclarations(catalogue))
    .replace(
      TRACK,
      (_, indent: string) =>
        `${indent}/**\n${indent} * Records an activity of the catalogue, by slug (\`placed-order\`) or Ortto id, with its attributes\n` +
        `${indent} * by friendly name (\`orderTotal: 24.99\`, converted by the relay) or Ortto id (sent as it is).\n${indent} */\n` +
        `${indent}<A extends ActivityName>(command: "track", activity: A, ...attributes: TrackArguments<A>): void;\n`,
    );
}
