/**
 * Attributes the relay fills from the request (a catalogue attribute's `source`): the browser,
 * OS and device type parsed from the User-Agent, the page's address, the visitor's country,
 * region and city from Cloudflare. The page need not send them and cannot forge them: a page that
 * sends one is refused (worker/intake/friendly.ts), and a trusted server's own value is kept (its
 * request's User-Agent and location are the server's, not a visitor's).
 */
import { parse } from "bowser";
import type { EdgeSource } from "../../shared/catalogue.ts";
import { MAX_TEXT, valueCheck } from "../../shared/ortto-types.ts";
import type { PlannedActivity, PlannedField, TrackingPlan } from "../../shared/plan.ts";
import { type Issue, relayFilledMessage } from "./friendly.ts";

interface ParsedAgent {
  browser?: string;
  os?: string;
  device?: string;
}

/**
 * User agents already parsed: a site's visitors share a few hundred, and a parse costs tens of
 * µs. Bounded (the oldest go first), so that junk user agents cannot grow it.
 */
const agents = new Map<string, ParsedAgent>();
const MAX_AGENTS = 1000;
/** Real user agents are a few hundred characters; a longer header is cut before the parser's regular expressions see it. */
const MAX_AGENT_LENGTH = 512;

/** The browser, OS and device type of a User-Agent (bowser), once per user agent and isolate. */
export function parseAgent(userAgent: string): ParsedAgent {
  const ua = userAgent.slice(0, MAX_AGENT_LENGTH);
  let parsed = agents.get(ua);
  if (!parsed) {
    parsed = {};
    try {
      const { browser, os, platform } = parse(ua);
      parsed = { browser: browser.name, os: os.name, device: platform.type };
    } catch {
      // an unparseable user agent fills nothing
    }
    if (agents.size >= MAX_AGENTS) agents.delete(agents.keys().next().value as string);
    agents.set(ua, parsed);
  }
  return parsed;
}

/** The values a request gives, each looked up only when an attribute asks for it. */
function sourceValue(source: EdgeSource, request: Request): string | undefined {
  const cf = request.cf as IncomingRequestCfProperties | undefined;
  switch (source) {
    case "browser":
    case "os":
    case "device": {
      const ua = request.headers.get("user-agent");
      return ua ? parseAgent(ua)[source] : undefined;
    }
    case "page_url":
      return pageUrl(request.headers.get("referer"), request.headers.get("origin"));
    case "country":
    case "region":
    case "city": {
      // Cloudflare sets strings; anything else (a test's or a proxy's cf object) fills nothing.
      const value: unknown = cf?.[source];
      return typeof value === "string" ? value : undefined;
    }
  }
}

/**
 * The page's address: the Referer when it is on the request's own origin (the page that sent
 * it), else the Origin. A Referer from another origin (a page's referrer policy, a forged header)
 * is not the page the event happened on.
 */
function pageUrl(referer: string | null, origin: string | null): string | undefined {
  if (referer && origin && (referer === origin || referer.startsWith(`${origin}/`))) return referer;
  return origin ?? undefined;
}

/** A page's address within Ortto's 255 characters: without its query and fragment when it is longer. */
function shortUrl(url: string): string {
  if (url.length <= MAX_TEXT) return url;
  const parsed = URL.parse(url);
  return parsed ? `${parsed.origin}${parsed.pathname}` : url;
}

/** Per attribute, the check of its kind: a value the relay takes from the request is filled only if Ortto would take it. */
const checks = new WeakMap<PlannedField, (value: unknown) => boolean>();
function fits(field: PlannedField, value: string): boolean {
  let check = checks.get(field);
  if (!check) {
    check = valueCheck(field.kind, field.options);
    checks.set(field, check);
  }
  return check(value);
}

/**
 * Fills each activity's relay-sourced attributes from a page's request, in place, before
 * validation (so the schema's limits count them). A value the request does not give, or that
 * does not fit the attribute's kind (a `bot` device for a select of desktop and mobile), is left
 * out. One the page sent itself (by Ortto id; a friendly name is refused by the translation) is a
 * problem: the page cannot forge it. Activities without such attributes cost a Map lookup.
 */
export function fillFromRequest(body: unknown, plan: TrackingPlan, request: Request): Issue[] {
  const issues: Issue[] = [];
  const list = (body as { activities?: unknown } | null)?.activities;
  if (!Array.isArray(list)) return issues;
  for (const [i, activity] of list.entries()) {
    if (typeof activity !== "object" || activity === null || Array.isArray(activity)) continue;
    const a = activity as { activity_id?: unknown; attributes?: unknown };
    const definition: PlannedActivity | undefined = typeof a.activity_id === "string" ? plan.activities.get(a.activity_id) : undefined;
    if (!definition?.edge.length) continue;
    if (a.attributes === undefined) a.attributes = {};
    const attributes = a.attributes;
    if (typeof attributes !== "object" || attributes === null || Array.isArray(attributes)) continue;
    for (const field of definition.edge) {
      if (Object.hasOwn(attributes, field.id)) {
        issues.push({ path: `activities.${i}.attributes.${field.id}`, message: relayFilledMessage(field) });
        continue;
      }
      const raw = sourceValue(field.source as EdgeSource, request);
      if (!raw) continue;
      const value = field.kind === "url" ? shortUrl(raw) : raw.slice(0, MAX_TEXT);
      if (fits(field, value)) (attributes as Record<string, unknown>)[field.id] = value;
    }
  }
  return issues;
}
