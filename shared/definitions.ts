/**
 * The catalogue as Ortto's definitions API reads it (`POST /v1/definitions/activity/create`,
 * `PUT …/modify`, `POST /v1/person/custom-field/create`; ../shared/ortto-api.md): the ids Ortto
 * derives from a name and a type, the bodies `npm run plan -- push` sends, Ortto's limits, and the
 * lock (ids + a hash per definition) that `npm run plan -- diff` compares against. No Node or
 * Workers API here: the emulator, the plan scripts and the tests in workerd all use it.
 */
import {
  type ActivityDefinition,
  type FieldSpec,
  MAX_ATTRIBUTES,
  type ResolvedCatalogue,
  specDetails,
  specKind,
  specOptions,
} from "./catalogue.ts";
import { BUILT_IN_PERSON_FIELDS, CONSENT_FIELDS, FIELD_ID, FIELD_KINDS, type FieldKind, type FieldPrefix, prefixOf } from "./field-ids.ts";

/**
 * Ortto's display type for each kind of the catalogue. A place has none: Ortto's definitions API
 * lists no display type for it, so a place attribute cannot be pushed (define it in Ortto's app).
 */
export const DISPLAY_TYPES = {
  text: "text",
  long_text: "large_text",
  integer: "integer",
  decimal: "decimal",
  currency: "currency",
  date: "date",
  datetime: "time",
  boolean: "bool",
  phone: "phone",
  url: "link",
  email: "email",
  single_select: "single_select",
  multi_select: "multi_select",
  json: "object",
} as const satisfies Partial<Record<FieldKind, string>>;
export type DisplayType = (typeof DISPLAY_TYPES)[keyof typeof DISPLAY_TYPES];

/** The catalogue's kind for each of Ortto's display types. */
export const KIND_OF_DISPLAY_TYPE = Object.fromEntries(Object.entries(DISPLAY_TYPES).map(([k, d]) => [d, k])) as Record<
  DisplayType,
  Exclude<FieldKind, "place">
>;
export const isDisplayType = (value: unknown): value is DisplayType =>
  typeof value === "string" && Object.hasOwn(KIND_OF_DISPLAY_TYPE, value);

/** Ortto's limit of custom person fields per account (its custom-field API: "at most 100"). */
export const MAX_CUSTOM_FIELDS = 100;
/**
 * Names of activities, attributes and fields. Ortto documents no length limit for them; this is the
 * relay's own bound, the one its id pattern allows (a slug of at most 100 characters).
 */
export const MAX_NAME_LENGTH = 100;
/**
 * How many custom activities an account may have depends on its Ortto plan, and Ortto publishes no
 * figure: nothing is checked locally, and an account that is full answers push's create with an error.
 */
export const MAX_ACTIVITIES_NOTE = "custom activities per account: depends on the Ortto plan; no figure is published, so it is not checked";
/** The icon push gives an activity without one (`icon_id`; Ortto does not publish the full list of ids). */
export const DEFAULT_ICON = "happy-illustration";

/**
 * The slug Ortto makes of a name: `Payment plan` → `payment-plan`. Ortto documents only examples
 * (`Size preference` → `size-preference`, `Logged in` → `logged-in`); how it treats punctuation and
 * accents is this function's assumption (accents dropped, every other run of non-alphanumerics one
 * hyphen), which `plan -- diff` against the account would show wrong.
 */
export function orttoSlug(name: string): string {
  return name
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
}

/** The id Ortto gives an activity of this name: `Logged in` → `act:cm:logged-in`. */
export const activityIdFor = (name: string) => `act:cm:${orttoSlug(name)}`;

/** The id Ortto gives a custom attribute or person field of this name and kind: `Payment plan`, text → `str:cm:payment-plan`. */
export const fieldIdFor = (kind: FieldKind, name: string) => `${FIELD_KINDS[kind]}:cm:${orttoSlug(name)}`;

/** The prefix of an id Ortto makes for a display type (`link` → `str`). */
export const prefixOfDisplayType = (type: DisplayType): FieldPrefix => FIELD_KINDS[KIND_OF_DISPLAY_TYPE[type]];

/** A name that makes this id's slug: `str:cm:payment-plan` → `Payment plan`. */
export function nameFromId(id: string): string {
  const words = id.slice(id.lastIndexOf(":") + 1).replace(/-/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** An attribute's or person field's name in Ortto: its `orttoName`, else the id's last part in words. */
export const orttoNameOf = (id: string, spec: FieldSpec) => specDetails(spec)?.orttoName ?? nameFromId(id);

/** One attribute of a definition: its name (Ortto derives its id), display type, and "map to CDP" field. */
export interface AttributeBody {
  name: string;
  display_type: DisplayType;
  /** `""` for no mapping, or the person field the value also updates. */
  field_id: string;
}

/** The body of `POST /v1/definitions/activity/create` (modify adds `activity_field_id` and `state`). */
export interface ActivityBody {
  name: string;
  icon_id: string;
  track_conversion_value: boolean;
  touch: boolean;
  filterable: boolean;
  visible_in_feeds: boolean;
  display_style: { type: "activity" | "activity_attribute" | "activity_template"; title?: string };
  attributes: AttributeBody[];
}

/** The body of `POST /v1/person/custom-field/create`. */
export interface CustomFieldBody {
  type: DisplayType;
  name: string;
  values?: string[];
  track_changes: boolean;
}

/** The conversion value is a switch of the activity (`track_conversion_value`), not an attribute. */
export const CONVERSION_VALUE = "int::v";

/** What push sends for an activity of the catalogue (a place attribute, which cannot be pushed, is left out: `limitProblems` names it). */
export function activityBody(definition: ActivityDefinition): ActivityBody {
  const attributes: AttributeBody[] = [];
  for (const [id, spec] of Object.entries(definition.attributes)) {
    const kind = specKind(spec);
    if (id === CONVERSION_VALUE || kind === "place") continue;
    attributes.push({ name: orttoNameOf(id, spec), display_type: DISPLAY_TYPES[kind], field_id: specDetails(spec)?.mapTo ?? "" });
  }
  return {
    name: definition.name,
    icon_id: definition.icon ?? DEFAULT_ICON,
    track_conversion_value: Object.hasOwn(definition.attributes, CONVERSION_VALUE),
    touch: definition.touch ?? false,
    filterable: true,
    visible_in_feeds: true,
    display_style: definition.display ? { type: "activity_template", title: definition.display } : { type: "activity" },
    attributes,
  };
}

/** The catalogue's custom person fields (`str:cm:company`): push creates these; Ortto's built-in ones exist already. */
export function customPersonFields(catalogue: ResolvedCatalogue): [string, FieldSpec][] {
  return Object.entries(catalogue.personFields).filter(([id]) => id.includes(":cm:"));
}

/** What push sends to create a custom person field (`type` takes the display types; Ortto's full list is not published). */
export function customFieldBody(id: string, spec: FieldSpec): CustomFieldBody {
  const kind = specKind(spec);
  const options = specOptions(spec);
  return {
    type: DISPLAY_TYPES[kind as keyof typeof DISPLAY_TYPES],
    name: orttoNameOf(id, spec),
    ...(options?.length && (kind === "single_select" || kind === "multi_select") ? { values: [...options] } : {}),
    track_changes: false,
  };
}

/**
 * Every id of the catalogue that is not the one Ortto derives from its name and kind: an activity
 * `act:cm:<slug of its name>`, an attribute or custom person field `<prefix of its kind>:cm:<slug of
 * its Ortto name>`. The conversion value (`int::v`) and Ortto's built-in person fields are Ortto's own.
 */
export function idProblems(catalogue: ResolvedCatalogue): string[] {
  const problems: string[] = [];
  for (const [id, definition] of Object.entries(catalogue.activities)) {
    const expected = activityIdFor(definition.name);
    if (expected !== id) problems.push(`activities.${id}: Ortto gives an activity named "${definition.name}" the id ${expected}`);
    for (const [attr, spec] of Object.entries(definition.attributes)) {
      if (attr === CONVERSION_VALUE) continue;
      const kind = specKind(spec);
      const name = orttoNameOf(attr, spec);
      const made = fieldIdFor(kind, name);
      if (made !== attr)
        problems.push(
          `activities.${id}.attributes.${attr}: Ortto gives a ${kind} attribute named "${name}" the id ${made}${
            attr.includes(":cm:") ? "" : " (custom attributes are :cm:; a built-in id such as str::email is a person field, sent in fields)"
          }`,
        );
    }
  }
  for (const [id, spec] of Object.entries(catalogue.personFields)) {
    if (!id.includes(":cm:")) continue;
    const made = fieldIdFor(specKind(spec), orttoNameOf(id, spec));
    if (made !== id)
      problems.push(`personFields.${id}: Ortto gives a ${specKind(spec)} field named "${orttoNameOf(id, spec)}" the id ${made}`);
  }
  return problems;
}

/**
 * Ortto's limits, checked before anything is sent: attributes per activity (15), custom person
 * fields per account (100, counting those the account already has when it can be read), unique
 * names, name lengths (not documented by Ortto: MAX_NAME_LENGTH is the relay's bound), and what
 * the definitions API can express (no display type for a place; the conversion value is currency;
 * a "map to CDP" field of the attribute's type).
 */
export function limitProblems(catalogue: ResolvedCatalogue, accountCustomFields: readonly string[] = []): string[] {
  const problems: string[] = [];
  const long = (where: string, name: string) => {
    if (name.length > MAX_NAME_LENGTH)
      problems.push(
        `${where}: the name "${name.slice(0, 40)}…" has ${name.length} characters; at most ${MAX_NAME_LENGTH} (the relay's bound: Ortto documents none)`,
      );
  };
  const activityNames = new Map<string, string>();
  for (const [id, definition] of Object.entries(catalogue.activities)) {
    const where = `activities.${id}`;
    long(where, definition.name);
    const key = definition.name.trim().toLowerCase();
    const taken = activityNames.get(key);
    if (taken) problems.push(`${where}: the name "${definition.name}" is taken by ${taken} (Ortto refuses duplicate activity names)`);
    activityNames.set(key, id);
    const attributes = Object.keys(definition.attributes).filter((a) => a !== CONVERSION_VALUE);
    if (attributes.length > MAX_ATTRIBUTES)
      problems.push(
        `${where}: ${attributes.length} attributes; Ortto allows at most ${MAX_ATTRIBUTES} an activity (the conversion value aside)`,
      );
    const names = new Map<string, string>();
    for (const [attr, spec] of Object.entries(definition.attributes)) {
      const at = `${where}.attributes.${attr}`;
      const kind = specKind(spec);
      if (attr === CONVERSION_VALUE) {
        if (kind !== "currency") problems.push(`${at}: Ortto's conversion value is a currency, not ${kind}`);
        continue;
      }
      if (kind === "place")
        problems.push(`${at}: Ortto's definitions API has no display type for a place; use text, or define it in Ortto's app`);
      const name = orttoNameOf(attr, spec);
      long(at, name);
      const other = names.get(name.trim().toLowerCase());
      if (other) problems.push(`${at}: the name "${name}" is taken by ${other} in this activity`);
      names.set(name.trim().toLowerCase(), attr);
      const mapTo = specDetails(spec)?.mapTo;
      if (mapTo !== undefined) {
        const known = catalogue.personFields[mapTo] ?? (BUILT_IN_PERSON_FIELDS as Record<string, FieldKind>)[mapTo];
        if (Object.hasOwn(CONSENT_FIELDS, mapTo))
          problems.push(`${at}: mapTo ${mapTo} is a consent field; an activity must not change consent`);
        else if (!FIELD_ID.test(mapTo) || (!known && !mapTo.includes(":cm:")))
          problems.push(`${at}: mapTo ${mapTo} is not a person field Ortto has`);
        else if (prefixOf(mapTo) !== FIELD_KINDS[kind])
          problems.push(`${at}: a ${kind} attribute cannot fill ${mapTo}, a field of another type`);
      }
    }
  }
  const fieldNames = new Map<string, string>();
  const custom = customPersonFields(catalogue);
  for (const [id, spec] of custom) {
    const where = `personFields.${id}`;
    const name = orttoNameOf(id, spec);
    long(where, name);
    const other = fieldNames.get(name.trim().toLowerCase());
    if (other) problems.push(`${where}: the name "${name}" is taken by ${other} (Ortto's field names are unique)`);
    fieldNames.set(name.trim().toLowerCase(), id);
    if (specKind(spec) === "place") problems.push(`${where}: Ortto's custom-field API has no type for a place`);
  }
  const total = new Set([...accountCustomFields, ...custom.map(([id]) => id)]).size;
  if (total > MAX_CUSTOM_FIELDS)
    problems.push(
      `personFields: ${total} custom person fields${accountCustomFields.length ? " (with the account's own)" : ""}; Ortto allows at most ${MAX_CUSTOM_FIELDS} an account`,
    );
  return problems;
}

// ---- The lock: what was last pushed, and the account read the same way ----

/** An attribute as the lock and the diff know it. */
export interface LockedAttribute {
  name: string;
  kind: FieldKind;
}
export interface LockedActivity {
  name: string;
  /** A hash of the body push sends: any change of name, icon, touch, display or an attribute changes it. */
  hash: string;
  attributes: Record<string, LockedAttribute>;
}
export interface LockedField {
  name: string;
  kind: FieldKind;
}
/** The committed lock file (`relay.plan.lock.json`): ids and a hash per definition. */
export interface Lock {
  activities: Record<string, LockedActivity>;
  personFields: Record<string, LockedField>;
}

/** JSON with object keys sorted and attributes in name order, so equal definitions hash alike. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object")
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(value);
}

/** FNV-1a, 64 bits, in hex: a change detector, not a security measure. */
export function hashOf(value: unknown): string {
  let h = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(canonical(value))) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16).padStart(16, "0");
}

/** The hash of an activity body, attribute order aside (the definitions of what push compares). */
export function bodyHash(body: ActivityBody): string {
  const { name, icon_id, track_conversion_value, touch, filterable, visible_in_feeds, display_style, attributes } = body;
  const sorted = [...attributes].map(({ name, display_type, field_id }) => ({ name, display_type, field_id: field_id || "" }));
  sorted.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return hashOf({ name, icon_id, track_conversion_value, touch, filterable, visible_in_feeds, display_style, attributes: sorted });
}

/** An activity's attributes by the ids Ortto gives them. */
export function attributesOf(body: ActivityBody): Record<string, LockedAttribute> {
  return Object.fromEntries(
    body.attributes.map((a) => {
      const kind = KIND_OF_DISPLAY_TYPE[a.display_type];
      return [fieldIdFor(kind, a.name), { name: a.name, kind }];
    }),
  );
}

/** The lock of a catalogue: what the account holds once it is pushed. */
export function lockOf(catalogue: ResolvedCatalogue): Lock {
  const activities: Record<string, LockedActivity> = {};
  for (const [id, definition] of Object.entries(catalogue.activities)) {
    const body = activityBody(definition);
    const attributes: Record<string, LockedAttribute> = {};
    for (const [attr, spec] of Object.entries(definition.attributes))
      if (attr !== CONVERSION_VALUE) attributes[attr] = { name: orttoNameOf(attr, spec), kind: specKind(spec) };
    activities[id] = { name: definition.name, hash: bodyHash(body), attributes };
  }
  const personFields: Record<string, LockedField> = {};
  for (const [id, spec] of customPersonFields(catalogue)) personFields[id] = { name: orttoNameOf(id, spec), kind: specKind(spec) };
  return { activities, personFields };
}

/** An account as read: its activity definitions by id (undefined: Ortto gave no way to read them) and its custom person fields. */
export interface AccountState {
  activities?: Record<string, ActivityBody>;
  personFields?: Record<string, LockedField>;
}

/** An account read into the lock's shape, so that one diff compares the catalogue with either. */
export function lockOfAccount(account: AccountState): Partial<Lock> {
  return {
    ...(account.activities && {
      activities: Object.fromEntries(
        Object.entries(account.activities).map(([id, body]) => [
          id,
          { name: body.name, hash: bodyHash(body), attributes: attributesOf(body) },
        ]),
      ),
    }),
    ...(account.personFields && { personFields: account.personFields }),
  };
}

// ---- Diff ----

/**
 * One difference between the catalogue and what was pushed (the lock) or what the account holds.
 * `breaking` changes what the relay's senders rely on (a kind changed, an attribute or activity
 * removed, an id renamed): push refuses them without --allow-breaking. `change` is drift push
 * resolves. `note` is what push leaves alone (the account's own definitions): not drift.
 */
export interface Change {
  level: "breaking" | "change" | "note";
  subject: string;
  message: string;
}

const ADVICE_REMOVED =
  "push never deletes: it stays in Ortto (archive it in Ortto's app once nothing sends it), and the relay stops accepting it";
const ADVICE_KIND =
  "Ortto cannot change a kind in place: add a new attribute (another name, so another id) and archive the old one in Ortto's app";

/**
 * The catalogue (as a lock) against a baseline: the committed lock (`against` "lock") or the
 * account (`against` "account", where what only the account has is a note, since push never deletes).
 * `modified` names the activities push would modify, when known (against the account, whose own
 * attributes push keeps, a different hash alone does not mean push has something to send).
 */
export function diffLocks(wanted: Lock, baseline: Partial<Lock>, against: "lock" | "account", modified?: ReadonlySet<string>): Change[] {
  const changes: Change[] = [];
  const missing = against === "lock" ? "not in the lock file: push creates it" : "not in the account: push creates it";
  if (baseline.activities) {
    const base = baseline.activities;
    const added = Object.keys(wanted.activities).filter((id) => !base[id]);
    for (const [id, old] of Object.entries(base)) {
      const now = wanted.activities[id];
      if (!now) {
        if (against === "account") {
          changes.push({ level: "note", subject: id, message: `in the account, not in the catalogue (push leaves it alone)` });
          continue;
        }
        const same = Object.keys(old.attributes).sort().join();
        const renamedTo = added.find(
          (a) =>
            Object.keys(wanted.activities[a]?.attributes ?? {})
              .sort()
              .join() === same,
        );
        changes.push({
          level: "breaking",
          subject: id,
          message: renamedTo
            ? `activity renamed to ${renamedTo}: Ortto makes a new activity of a new name, and ${id}'s history stays with ${id}; ${ADVICE_REMOVED}`
            : `activity removed from the catalogue; ${ADVICE_REMOVED}`,
        });
        continue;
      }
      const newAttrs = Object.keys(now.attributes).filter((a) => !old.attributes[a]);
      for (const [attr, was] of Object.entries(old.attributes)) {
        const is = now.attributes[attr];
        if (!is) {
          // The catalogue's attribute of the same name under another id is this one with its kind changed:
          // Ortto cannot hold both (one name, one attribute), nor change the kind in place.
          const sameName = newAttrs.find((a) => now.attributes[a]?.name.trim().toLowerCase() === was.name.trim().toLowerCase());
          if (sameName) {
            changes.push({
              level: "breaking",
              subject: `${id} ${attr}`,
              message: `kind changed from ${was.kind} to ${now.attributes[sameName]?.kind} (${attr} is now ${sameName}, of the same name "${was.name}"); ${ADVICE_KIND}`,
            });
            continue;
          }
          if (against === "account") {
            changes.push({
              level: "note",
              subject: `${id} ${attr}`,
              message: "attribute in the account, not in the catalogue (push keeps it)",
            });
            continue;
          }
          const renamedTo = newAttrs.find((a) => now.attributes[a]?.kind === was.kind);
          changes.push({
            level: "breaking",
            subject: `${id} ${attr}`,
            message: renamedTo
              ? `attribute renamed to ${renamedTo} (${was.kind}): a new name is a new attribute to Ortto; ${ADVICE_REMOVED}`
              : `attribute removed from the catalogue; ${ADVICE_REMOVED}`,
          });
        } else if (is.kind !== was.kind) {
          changes.push({
            level: "breaking",
            subject: `${id} ${attr}`,
            message: `kind changed from ${was.kind} to ${is.kind}; ${ADVICE_KIND}`,
          });
        }
      }
      for (const attr of newAttrs)
        changes.push({
          level: "change",
          subject: `${id} ${attr}`,
          message: `attribute (${now.attributes[attr]?.kind}) ${against === "lock" ? "not in the lock file" : "not defined in the account: Ortto ignores it until push adds it"}`,
        });
      if (
        (modified ? modified.has(id) : old.hash !== now.hash) &&
        !changes.some((c) => c.subject.startsWith(`${id} `) && c.level !== "note")
      )
        changes.push({
          level: "change",
          subject: id,
          message: "definition changed (name, icon, touch, display or an attribute's name or mapping): push modifies it",
        });
    }
    for (const id of added) changes.push({ level: "change", subject: id, message: `activity ${missing}` });
  }
  if (baseline.personFields) {
    const base = baseline.personFields;
    for (const [id, field] of Object.entries(wanted.personFields)) {
      const old = base[id];
      const sameName = Object.entries(base).find(
        ([other, f]) => other !== id && f.name.trim().toLowerCase() === field.name.trim().toLowerCase(),
      );
      if (!old && sameName)
        changes.push({
          level: "breaking",
          subject: id,
          message: `kind changed from ${sameName[1].kind} to ${field.kind} (${sameName[0]} has the name "${field.name}"); Ortto cannot change a field's type: give the field another name, so another id, and stop writing ${sameName[0]}`,
        });
      else if (!old) changes.push({ level: "change", subject: id, message: `custom person field ${missing}` });
      else if (old.kind !== field.kind)
        changes.push({
          level: "breaking",
          subject: id,
          message: `kind changed from ${old.kind} to ${field.kind}; Ortto cannot change a field's type: create another field and stop writing this one`,
        });
    }
    if (against === "lock")
      for (const id of Object.keys(base))
        if (!wanted.personFields[id])
          changes.push({ level: "breaking", subject: id, message: `custom person field removed from the catalogue; ${ADVICE_REMOVED}` });
  }
  return changes;
}
