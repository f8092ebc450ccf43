import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { ErrorBody } from "../shared/activities.ts";
import type { AppEnv, Outcome } from "./env.ts";

export type Detail = NonNullable<ErrorBody["details"]>[number];

/** Why a request was refused, as its log line and Analytics Engine point record it (blob2). */
export type Reason =
  | "config"
  | "server_token"
  | "ip_rate_limit"
  | "origin"
  | "schema"
  | "site_activity"
  | "identity"
  | "consent"
  | "no_key"
  | "contact_limit"
  | "people_budget"
  | "ortto_refused";

/** A refusal's outcome where it is not the plain "rejected" (or "error", for a 5xx). */
const OUTCOMES: Partial<Record<Reason, Outcome>> = {
  identity: "identity_failed",
  server_token: "identity_failed",
  ortto_refused: "upstream_error",
};

/**
 * An error the relay answers with, in Ortto's own envelope, carrying the reason its log line
 * records. Thrown anywhere below the app; `app.onError` answers `{ request_id, code, error,
 * details? }` and records the reason, in one place.
 */
export class RelayError extends HTTPException {
  readonly reason?: Reason;
  readonly headers?: Record<string, string>;
  constructor(
    status: ContentfulStatusCode,
    readonly sentence: string,
    readonly details?: Detail[],
    options: { reason?: Reason; headers?: Record<string, string> } = {},
  ) {
    super(status, { message: sentence });
    this.reason = options.reason;
    this.headers = options.headers;
  }

  /** How the request ended: a 429 (a limit or the network's rate) is "throttled", to come back later, not refused. */
  get outcome(): Outcome | undefined {
    if (this.status === 429) return "throttled";
    return this.reason && OUTCOMES[this.reason];
  }
}

/**
 * A refused path as the log line and Analytics Engine keep it: a key that is no identifier (quoted
 * in the path: it has dots or spaces; or one with an `@`) may be a value typed as a key, an
 * address above all, and shows as `?`. The sender's answer still names it.
 */
export function loggablePath(path: string): string {
  return path
    .replace(/"(?:[^"\\]|\\.)*"/g, '"?"')
    .split(".")
    .map((segment) => (segment.includes("@") ? "?" : segment))
    .join(".")
    .slice(0, 100);
}

/**
 * What an error answer may echo of the request: refusals name the page's keys and values, which
 * can be any length (a 200 kB attribute name was answered in 800 kB). Bounded, so a refused
 * request's answer is never larger than a few tens of kB.
 */
const MAX_ERROR_TEXT = 1000;
const MAX_DETAILS = 100;
const MAX_PATH = 200;
const MAX_MESSAGE = 300;
const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** Builds the envelope response; the request id comes from Hono's requestId middleware. */
export function errorResponse(
  c: Context,
  status: ContentfulStatusCode,
  error: string,
  details?: Detail[],
  headers?: Record<string, string>,
) {
  const bounded = details
    ?.slice(0, MAX_DETAILS)
    .map((d) => ({ ...d, path: clip(d.path, MAX_PATH), message: clip(d.message, MAX_MESSAGE) }));
  const body: ErrorBody = {
    request_id: c.get("requestId"),
    code: status,
    error: clip(error, MAX_ERROR_TEXT),
    ...(bounded?.length ? { details: bounded } : {}),
  };
  // The request's log line names what was refused (the paths its answer names, never the values).
  const log = c.get("log");
  if (log && details?.length) log.paths = details.slice(0, 10).map((d) => loggablePath(d.path));
  c.set("outcome", c.get("outcome") ?? (status >= 500 ? "error" : "rejected"));
  return c.json(body, status, headers);
}

/**
 * `app.onError`: our own errors keep their status and details, and their reason goes to the
 * request's log line; anything else is a bug, logged and answered 500 without internals.
 */
export function onError(err: Error, c: Context<AppEnv>) {
  if (err instanceof RelayError) {
    if (err.reason) c.get("log").reason = err.reason;
    if (err.outcome) c.set("outcome", err.outcome);
    return errorResponse(c, err.status as ContentfulStatusCode, err.sentence, err.details, err.headers);
  }
  if (err instanceof HTTPException) return errorResponse(c, err.status as ContentfulStatusCode, err.message || "Request refused");
  c.set("outcome", "error");
  c.set("errorName", err.name);
  return errorResponse(c, 500, "The relay failed unexpectedly; the request was not forwarded");
}
