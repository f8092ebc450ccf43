/**
 * `GET /`: what the emulated Ortto received, worded as Ortto's activity feed words it
 * ("Chris Smith logged in"). Every value came from a request, so every value is escaped.
 */
import { type FieldKind, TEMPLATE_VARIABLE, templateName } from "../shared/index.ts";
import { attributeKinds } from "./ingest.ts";
import { type StoredActivity, state } from "./store.ts";

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c] as string);
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Who did it: first + last name, else email (Ortto's feed does the same), else any id. */
function who(a: StoredActivity): string {
  const fields = { ...a.fields, ...state.people.get(a.person_id)?.fields };
  const name = [fields["str::first"], fields["str::last"]].filter((v) => typeof v === "string" && v.trim()).join(" ");
  const email = fields["str::email"];
  return (
    name || (typeof email === "string" && email) || (typeof fields["str::ei"] === "string" && fields["str::ei"]) || `Person ${a.person_id}`
  );
}

/** `str:cm:payment-plan` → "Payment plan"; `int::v` is Ortto's conversion value. */
function label(attr: string): string {
  if (attr === "int::v") return "Conversion value";
  const slug = (attr.split(":").at(-1) ?? attr).replace(/-/g, " ");
  return slug.charAt(0).toUpperCase() + slug.slice(1);
}

/** A value as a person reads it: decimals and currency back from × 1000, dates spelled out. */
function display(kind: FieldKind | undefined, value: unknown): string {
  if (value === null || value === undefined) return "(empty)";
  const v = value as Record<string, unknown>;
  switch (kind) {
    case "decimal":
      return String(Number(value) / 1000);
    case "currency":
      return (Number(value) / 1000).toFixed(2);
    case "boolean":
      return value ? "yes" : "no";
    case "date":
      return `${v.day} ${MONTHS[Number(v.month) - 1] ?? v.month} ${v.year} (${v.timezone})`;
    case "datetime": {
      const d = new Date(String(value));
      return Number.isNaN(d.getTime()) ? String(value) : d.toUTCString();
    }
    case "phone":
      return v.phone ? `+${String(v.phone).replace(/^\+/, "")}` : `+${v.c} ${v.n}`;
    case "place":
      return String(v.name);
    case "multi_select":
      return Array.isArray(value) ? value.join(", ") : String(value);
    default:
      return typeof value === "object" ? JSON.stringify(value) : String(value);
  }
}

/**
 * An activity's custom display, as Ortto renders it: `{{attribute.order_number}}` is the attribute
 * of that name (lower case, spaces as underscores); one the activity did not carry is left empty.
 * Values are escaped here, the template's own text too.
 */
export function renderDisplay(template: string, activity: Pick<StoredActivity, "activity_id" | "attributes">): string {
  const definition = state.definitions.get(activity.activity_id);
  const kinds = definition ? attributeKinds(definition) : new Map<string, FieldKind>();
  const byName = new Map([...kinds.keys()].map((id) => [templateName(id), id]));
  return template
    .split(TEMPLATE_VARIABLE)
    .map((part, i) => {
      if (i % 2 === 0) return escapeHtml(part);
      const id = byName.get(part);
      const value = id === undefined ? undefined : activity.attributes[id];
      return value === undefined ? "" : `<em>${escapeHtml(display(kinds.get(id as string), value))}</em>`;
    })
    .join("");
}

function where(location: unknown): string {
  if (typeof location !== "object" || location === null) return "";
  const l = location as { source_ip?: unknown; custom?: Record<string, unknown>; address?: Record<string, unknown> };
  if (l.source_ip) return `IP ${l.source_ip}`;
  const place = l.custom ?? l.address;
  if (!place) return JSON.stringify(location);
  const parts = [
    place.position_name,
    place.city_name ?? place.city,
    place.region_name ?? place.region,
    place.country_name ?? place.country,
  ];
  return parts.filter((p) => p !== undefined && p !== "").join(", ");
}

/** What Ortto dropped without a word: attributes the account does not define. */
export const IGNORED = "ignored: not defined in this account";

function item(a: StoredActivity): string {
  const definition = state.definitions.get(a.activity_id);
  const kinds = definition ? attributeKinds(definition) : new Map<string, FieldKind>();
  const verb = (definition?.name ?? a.activity_id).toLowerCase();
  const names = new Map(definition?.attributes.map((d) => [d.attribute_field_id, d.name]));
  const rows = [
    ...Object.entries(a.attributes).map(
      ([attr, value]) => `<dt>${escapeHtml(names.get(attr) ?? label(attr))}</dt><dd>${escapeHtml(display(kinds.get(attr), value))}</dd>`,
    ),
    ...a.ignored_attributes.map((attr) => `<dt><code>${escapeHtml(attr)}</code></dt><dd class="ignored">${IGNORED}</dd>`),
  ].join("");
  const place = where(a.location);
  const meta = [
    `created ${escapeHtml(new Date(a.created).toUTCString())}`,
    a.key === undefined ? "" : `key <code>${escapeHtml(a.key)}</code>`,
    place ? `from ${escapeHtml(place)}` : "",
    a.async ? "async" : "",
  ].filter(Boolean);
  const template = definition?.display_style.type === "activity_template" ? definition.display_style.title : undefined;
  const custom = template ? `<p class="display">${renderDisplay(template, a)}</p>` : "";
  return `<li><p class="what"><strong>${escapeHtml(who(a))}</strong> ${escapeHtml(verb)}</p>${custom}${rows ? `<dl>${rows}</dl>` : ""}<p class="meta">${meta.join(" · ")}</p></li>`;
}

const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** The account's request budget, when fault injection sets one: how it was spent and refused. */
function budgetLine(): string {
  const { maxRps } = state.faults;
  if (!maxRps && !state.rateLimited) return "";
  const busiest = Math.max(0, ...[...state.perSecond.values()].map((s) => s.requests));
  const limit = maxRps ? `Request budget ${maxRps} a second` : "No request budget";
  return `<p class="budget">${limit} · ${count(state.rateLimited, "request", "requests")} answered 429 (rate limit) · busiest second ${count(busiest, "request", "requests")}</p>\n`;
}

export function renderFeed(): string {
  const feed = state.activities.slice().reverse().map(item).join("\n");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>Ortto emulator: activity feed</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; margin-bottom: 0.2rem; }
.summary { color: #555; margin-top: 0; }
.budget { color: #8a4b00; margin-top: 0; }
ol { list-style: none; padding: 0; }
li { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 0.9rem; margin: 0.6rem 0; }
.what { margin: 0; font-size: 1.05rem; }
.display { margin: 0.2rem 0 0; color: #333; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.1rem 1rem; margin: 0.4rem 0; }
dt { color: #666; }
dd { margin: 0; overflow-wrap: anywhere; }
.meta { margin: 0; color: #777; font-size: 0.85rem; }
.empty { color: #777; }
.ignored { color: #a33; }
</style>
</head>
<body>
<h1>Ortto emulator: activity feed</h1>
<p class="summary">${count(state.people.size, "person", "people")} · ${count(state.activities.length, "activity", "activities")} · ${count(state.duplicates, "duplicate", "duplicates")} merged · ${count(state.requestCount, "create request", "create requests")}</p>
${budgetLine()}${feed ? `<ol>\n${feed}\n</ol>` : `<p class="empty">No activities yet. POST some to /v1/activities/create.</p>`}
</body>
</html>
`;
}
