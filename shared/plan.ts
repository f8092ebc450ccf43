/**
 * The tracking plan: the catalogue (relay.config.ts) read as what a page may write — each
 * activity's attributes and each person field by friendly name and by Ortto id, with its kind,
 * whether it is required, where the relay takes it from, and the activity's display template.
 * Built once per catalogue; the relay's translation, the generated typings, `npm run plan` and the
 * emulator's feed all read it.
 */
import { type EdgeSource, type FieldSpec, type ResolvedCatalogue, specDetails, specKind, specOptions } from "./catalogue.ts";
import { activitySlug, type FieldKind, friendlyName, templateName } from "./field-ids.ts";

/** One attribute or person field of the plan. */
export interface PlannedField {
  /** Ortto's id: `int:cm:order-total`. */
  id: string;
  /** What a page may write instead: `orderTotal`. */
  name: string;
  kind: FieldKind;
  options?: readonly string[];
  description?: string;
  required: boolean;
  /** Set when the relay fills it (the page may not send it). */
  source?: EdgeSource;
  /** For dates: the zone a plain `2026-12-24` is in, as the catalogue writes it. */
  timezone?: string;
  /** How Ortto's display templates name it: `order_total`. */
  template: string;
}

export interface PlannedActivity {
  id: string;
  /** `placed-order`: what a page may track by. */
  slug: string;
  name: string;
  description?: string;
  display?: string;
  attributes: PlannedField[];
  /** Every attribute by friendly name (a Map: names such as `constructor` are plain keys here); a page may not send the relay-filled ones. */
  byName: ReadonlyMap<string, PlannedField>;
  /** By Ortto id. */
  byId: ReadonlyMap<string, PlannedField>;
  /** Attributes the relay fills from the request. */
  edge: PlannedField[];
  /** Ids of the attributes a page must send. */
  required: string[];
}

export interface TrackingPlan {
  activities: ReadonlyMap<string, PlannedActivity>;
  personFields: PlannedField[];
  personByName: ReadonlyMap<string, PlannedField>;
  personById: ReadonlyMap<string, PlannedField>;
}

function planned(id: string, spec: FieldSpec): PlannedField {
  const details = specDetails(spec);
  const timezone = details?.timezone;
  return {
    id,
    name: details?.name ?? friendlyName(id),
    kind: specKind(spec),
    ...(specOptions(spec)?.length ? { options: specOptions(spec) } : {}),
    ...(details?.description ? { description: details.description } : {}),
    required: details?.required === true && details.source === undefined,
    ...(details?.source ? { source: details.source } : {}),
    ...(timezone ? { timezone } : {}),
    template: templateName(id),
  };
}

const plans = new WeakMap<object, TrackingPlan>();

/** The tracking plan of a (checked) catalogue, built once per catalogue and isolate. */
export function trackingPlan(catalogue: ResolvedCatalogue): TrackingPlan {
  const cached = plans.get(catalogue);
  if (cached) return cached;
  const activities = new Map<string, PlannedActivity>();
  for (const [id, definition] of Object.entries(catalogue.activities)) {
    const attributes = Object.entries(definition.attributes).map(([attr, spec]) => planned(attr, spec));
    activities.set(id, {
      id,
      slug: activitySlug(id),
      name: definition.name,
      ...(definition.description ? { description: definition.description } : {}),
      ...(definition.display ? { display: definition.display } : {}),
      attributes,
      byName: new Map(attributes.map((a) => [a.name, a])),
      byId: new Map(attributes.map((a) => [a.id, a])),
      edge: attributes.filter((a) => a.source !== undefined),
      required: attributes.filter((a) => a.required).map((a) => a.id),
    });
  }
  const personFields = Object.entries(catalogue.personFields).map(([id, spec]) => planned(id, spec));
  const plan: TrackingPlan = {
    activities,
    personFields,
    personByName: new Map(personFields.map((f) => [f.name, f])),
    personById: new Map(personFields.map((f) => [f.id, f])),
  };
  plans.set(catalogue, plan);
  return plan;
}
