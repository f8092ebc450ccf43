/**
 * What a page (or a server) sent, turned into Ortto's activities, in the order this file reads:
 * the body parsed; the snippet's shorthands expanded (shorthand.ts); a page's request given the
 * attributes the relay fills from it (edge.ts); then the fast path, a body the predicate accepts
 * taken as it is, so activities in Ortto's ids pay nothing more; else the friendly names become
 * Ortto's ids, their values converted (friendly.ts: `orderTotal: 24.99` → `int:cm:order-total:
 * 24990`), and the predicate is asked again; failing that the schema decides, and names every
 * problem as the page wrote it (its friendly name or shorthand, never an id or a sub-key it did
 * not write). Every refusal is a 400 naming the fields and the rules.
 */
import type * as z from "zod/mini";
import catalogue from "../../relay.config.ts";
import { type ActivitiesRequest, activitiesRequestSchema, describeIssue, fastAccept } from "../../shared/activities.ts";
import { trackingPlan } from "../../shared/plan.ts";
import { RelayError } from "../errors.ts";
import { fillFromRequest } from "./edge.ts";
import { keyAsSent, pathAsSent, type Renamed, translateRequest, visitorZone } from "./friendly.ts";
import { type Expansion, expandShorthands, shorthandNames } from "./shorthand.ts";

/**
 * Built once per isolate: per-activity schemas for every catalogue entry (the definition of what
 * is valid, and the errors), and the hot path's predicate that accepts what they accept, cheaply.
 */
const requestSchema = activitiesRequestSchema(catalogue);
const accepted = fastAccept(catalogue);
/** The catalogue as a tracking plan: friendly names and relay-filled attributes, by activity. */
const plan = trackingPlan(catalogue);

/** The request's activities, valid, as Ortto takes them; `fromPage`: not a trusted server's. */
export function readActivities(text: string, request: Request, fromPage: boolean): ActivitiesRequest {
  const expansion: Expansion = { issues: [], used: [] };
  const body = expandShorthands(parseJson(text), expansion);
  if (expansion.issues.length) throw invalid(expansion.issues);
  if (fromPage) {
    const forged = fillFromRequest(body, plan, request);
    if (forged.length) throw invalid(forged);
  }
  if (accepted(body)) return body;
  const cf = request.cf as IncomingRequestCfProperties | undefined;
  const { issues, renamed, translated } = translateRequest(body, plan, {
    visitorZone: visitorZone(cf?.timezone),
    fromPage,
    renamed: shorthandNames(expansion),
  });
  if (issues.length) throw invalid(issues);
  if (translated && accepted(body)) return body;
  const parsed = requestSchema.safeParse(body);
  if (parsed.success) return parsed.data as ActivitiesRequest;
  throw invalid(parsed.error.issues.map((issue) => describeIssue(renamed ? asSent(issue, renamed) : issue)));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new RelayError(
      400,
      "The body is not valid JSON",
      [{ path: "body", message: "expected a JSON object with an activities array" }],
      {
        reason: "schema",
      },
    );
  }
}

function invalid(details: { path: string; message: string }[]): RelayError {
  const first = details[0];
  return new RelayError(
    400,
    `Invalid request: ${first?.path} ${first?.message}${details.length > 1 ? ` (and ${details.length - 1} more)` : ""}`,
    details,
    { reason: "schema" },
  );
}

/** A schema issue with its path, and the unknown keys it names, as the page wrote them. */
function asSent(issue: z.core.$ZodIssue, renamed: Renamed): z.core.$ZodIssue {
  const path = pathAsSent(issue.path, renamed);
  return issue.code === "unrecognized_keys"
    ? { ...issue, path, keys: issue.keys.map((key) => keyAsSent(issue.path, key, renamed)) }
    : { ...issue, path };
}
