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
import { type ActivitiesRequest, type ActivityInput, activitiesRequestSchema, describeIssue, fastAccept } from "../../shared/activities.ts";
import { trackingPlan } from "../../shared/plan.ts";
import { RelayError } from "../errors.ts";
import { fillFromRequest } from "./edge.ts";
import { type Issue, keyAsSent, pathAsSent, type Renamed, translateRequest, visitorZone } from "./friendly.ts";
import { type Expansion, expandShorthands, shorthandNames } from "./shorthand.ts";

/**
 * Built once per isolate: per-activity schemas for every catalogue entry (the definition of what
 * is valid, and the errors), and the hot path's predicate that accepts what they accept, cheaply.
 */
const requestSchema = activitiesRequestSchema(catalogue);
const accepted = fastAccept(catalogue);
/** The catalogue as a tracking plan: friendly names and relay-filled attributes, by activity. */
const plan = trackingPlan(catalogue);

/** An activity refused on its own: its index in the request, and the field and rule, as the page wrote them. */
export interface Refusal {
  index: number;
  path: string;
  message: string;
  /** Every problem, when there are several (`path` and `message` are the first). */
  details?: Issue[];
}

/**
 * What the relay takes of a request: its valid activities as Ortto takes them (`body`), the index
 * in the request of each (`kept`), and the activities refused, each with what is wrong with it.
 */
export interface Intake {
  body: ActivitiesRequest;
  kept: number[];
  refused: Refusal[];
  /** A problem found later, named as the sender wrote the request (`a.3…` for the snippet's `a`). */
  named: (problem: Issue) => Issue;
}

/** The index of the activity a problem is about (`activities.3.attributes.x` → 3), or -1 for the request as a whole. */
const ACTIVITY_PATH = /^activities\.(\d+)(?:\.|$)/;
const activityOf = (path: string) => {
  const match = ACTIVITY_PATH.exec(path);
  return match ? Number(match[1]) : -1;
};

/**
 * The request's activities, each judged on its own. Problems with the request as a whole (not
 * JSON, no activities array, more than 100, a bad `identity_token`, `t` or `merge_by`) are a 400,
 * and so is a request whose every activity is refused: nothing is forwarded. Otherwise the valid
 * activities go on, and each refused one is named with the problems of the first step that found
 * any (a shorthand given twice is named as such, not again as an unknown key). `fromPage`: not a
 * trusted server's.
 */
export function readActivities(text: string, request: Request, fromPage: boolean): Intake {
  const expansion: Expansion = { issues: [], used: [] };
  const body = expandShorthands(parseJson(text), expansion) as ActivitiesRequest;
  // The steps' problems, in order: each activity is named with those of the first step that found any.
  const steps: Issue[][] = [expansion.issues];
  if (fromPage) steps.push(fillFromRequest(body, plan, request));
  if (!expansion.issues.length && !steps[1]?.length && accepted(body)) return whole(body, expansion);
  const cf = request.cf as IncomingRequestCfProperties | undefined;
  const { issues, renamed, translated } = translateRequest(body, plan, {
    visitorZone: visitorZone(cf?.timezone),
    fromPage,
    renamed: shorthandNames(expansion),
  });
  steps.push(issues);
  const clean = steps.every((step) => !step.length);
  if (clean && translated && accepted(body)) return whole(body, expansion);
  const parsed = requestSchema.safeParse(body);
  if (clean && parsed.success) return whole(parsed.data as ActivitiesRequest, expansion);
  if (!parsed.success) steps.push(parsed.error.issues.map((issue) => describeIssue(renamed ? asSent(issue, renamed) : issue)));

  const named = (details: Issue[]) => details.map(namer(expansion));
  const first = new Map<number, number>();
  for (const [n, step] of steps.entries())
    for (const issue of step) {
      const index = activityOf(issue.path);
      // The request as a whole: a 400, with this step's problems.
      if (index < 0) throw invalid(named(step));
      if (!first.has(index)) first.set(index, n);
    }
  const details = steps.flatMap((step, n) => step.filter((d) => first.get(activityOf(d.path)) === n));
  const list = body.activities;
  let kept = list.flatMap((_, i) => (first.has(i) ? [] : [i]));
  // The rest, judged again as a request: a rule over the whole request (merge_by) runs only once its
  // activities pass, so it may refuse more of them now (their paths put back to the request's indexes).
  for (;;) {
    if (!kept.length) throw invalid(named(details));
    const rest = { ...body, activities: kept.map((i) => list[i] as ActivityInput) };
    const done = (valid: ActivitiesRequest): Intake => ({
      body: valid,
      kept,
      refused: refusals(named(details), details),
      named: namer(expansion),
    });
    if (accepted(rest)) return done(rest);
    const again = requestSchema.safeParse(rest);
    if (again.success) return done(again.data as ActivitiesRequest);
    const at = kept;
    const more = again.error.issues.map((issue) => {
      const [top, index, ...tail] = issue.path;
      const path = top === "activities" && typeof index === "number" ? [top, at[index] as number, ...tail] : issue.path;
      const problem = describeIssue({ ...issue, path });
      return renamed && path !== issue.path ? describeIssue(asSent({ ...issue, path }, renamed)) : problem;
    });
    if (more.some((d) => activityOf(d.path) < 0)) throw invalid(named(more));
    details.push(...more);
    const out = new Set(more.map((d) => activityOf(d.path)));
    kept = kept.filter((i) => !out.has(i));
  }
}

/**
 * One entry per refused activity, in the request's order: its index, its first problem, and, when
 * it has several, every one (`details`). (`shown`: the problems as named to the sender; `details`:
 * the same with the relay's paths, which give the index.)
 */
function refusals(shown: Issue[], details: Issue[]): Refusal[] {
  const by = new Map<number, Issue[]>();
  for (const [n, d] of shown.entries()) {
    const index = activityOf((details[n] as Issue).path);
    by.set(index, [...(by.get(index) ?? []), d]);
  }
  return [...by]
    .sort(([a], [b]) => a - b)
    .map(([index, [first, ...more]]) => ({ index, ...(first as Issue), ...(more.length ? { details: [first as Issue, ...more] } : {}) }));
}

const whole = (body: ActivitiesRequest, expansion: Expansion): Intake => ({
  body,
  kept: body.activities.map((_, i) => i),
  refused: [],
  named: namer(expansion),
});

const same = (problem: Issue) => problem;
const shortened = (problem: Issue) => ({ ...problem, path: asShort(problem.path) });
const namer = (expansion: Expansion) => (expansion.short ? shortened : same);

/** A path as the snippet wrote it, which sends the request's `activities` and `identity_token` as `a` and `i`. */
function asShort(path: string): string {
  return path.replace(/^activities(?=\.|$)/, "a").replace(/^identity_token$/, "i");
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

function invalid(details: Issue[]): RelayError {
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
