import type { ActivitiesRequest, ActivitiesResponse, ActivityInput } from "../shared/activities.ts";
import { MAX_ACTIVITIES, MAX_BODY_BYTES } from "../shared/activities.ts";
import type { RelayConfig } from "./config.ts";

export type UpstreamResult =
  | { ok: true; status: number; body: ActivitiesResponse }
  /** Ortto refused the request (4xx other than 429): re-sending would fail the same way. */
  | { ok: false; permanent: true; status: number; error: string; details?: unknown }
  /**
   * Ortto was slow, down, rate-limiting or failing, or refused the relay's key: the same request
   * may succeed later. `holdUntil` (epoch ms): not a failure of these activities but a wait every
   * sender keeps (Ortto's pause, the refusals window, a site's circuit), so no retry is spent on it.
   */
  | { ok: false; permanent: false; status?: number; error: string; retryAfterSeconds?: number; holdUntil?: number; keyRefused?: boolean };

/** Splits activities into requests Ortto accepts: ≤ 100 activities and ≤ 2 MB each. */
export function chunkActivities(activities: ActivityInput[], maxBytes = MAX_BODY_BYTES - 1024): ActivityInput[][] {
  // The common case, one request: a request's 16 kB activities rarely near 2 MB, so measure once.
  if (activities.length <= MAX_ACTIVITIES && JSON.stringify(activities).length * 3 <= maxBytes) return [activities];
  const chunks: ActivityInput[][] = [];
  let current: ActivityInput[] = [];
  let bytes = 0;
  for (const activity of activities) {
    const size = JSON.stringify(activity).length + 1;
    if (current.length && (current.length === MAX_ACTIVITIES || bytes + size > maxBytes)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(activity);
    bytes += size;
  }
  if (current.length) chunks.push(current);
  return chunks;
}

/** Ortto's error text, from its envelope (`{"error":"…"}`) or its 429 body (`{"error":{"message":…}}`). */
function orttoMessage(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const error = (body as { error?: unknown }).error;
  if (typeof error === "string") return error.trim();
  if (typeof error === "object" && error !== null && typeof (error as { message?: unknown }).message === "string") {
    return (error as { message: string }).message;
  }
  return undefined;
}

async function readJson(res: Response): Promise<unknown> {
  try {
    return await res.json();
  } catch {
    return undefined;
  }
}

/** How long a 429 asks every sender to wait: the longer of its body's try-in-seconds and a Retry-After header (seconds), else 10. */
function rateLimitWait(res: Response, json: unknown): number {
  const body = Number((json as { error?: { "try-in-seconds"?: unknown } } | undefined)?.error?.["try-in-seconds"]);
  const retryAfter = res.headers.get("retry-after") ?? "";
  // Retry-After is seconds or an HTTP date.
  const header = /^\d+$/.test(retryAfter.trim()) ? Number(retryAfter) : (Date.parse(retryAfter) - Date.now()) / 1000;
  const waits = [body, header].filter((n) => Number.isFinite(n) && n > 0);
  return waits.length ? Math.min(3600, Math.ceil(Math.max(...waits))) : 10;
}

const KEY_FAULTS = new Set([401, 403, 404]);
const utf8 = new TextEncoder();
/** Ortto's error text is echoed to pages and logs; bounded, as everything else there is. */
const MAX_ORTTO_TEXT = 300;

/** One POST to Ortto (the body already serialised), bounded by the configured timeout. The key is added here and nowhere else. */
async function post(config: RelayConfig, apiKey: string, body: string): Promise<UpstreamResult> {
  let res: Response;
  try {
    res = await fetch(`${config.base}/v1/activities/create`, {
      method: "POST",
      headers: { "X-Api-Key": apiKey, "Content-Type": "application/json" },
      body,
      signal: AbortSignal.timeout(config.timeoutMs),
      // A redirect would carry the key to another host; Ortto's API does not redirect.
      redirect: "manual",
    });
  } catch (err) {
    const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
    return {
      ok: false,
      permanent: false,
      error: timedOut ? `Ortto did not answer within ${config.timeoutMs} ms` : "Ortto could not be reached",
    };
  }
  const json = await readJson(res);
  if (res.ok) {
    const activities = (json as ActivitiesResponse | undefined)?.activities;
    if (Array.isArray(activities)) return { ok: true, status: res.status, body: { activities } };
    return { ok: false, permanent: false, status: res.status, error: "Ortto answered without a list of activity results" };
  }
  if (res.status === 429) {
    return {
      ok: false,
      permanent: false,
      status: 429,
      error: "Ortto is rate-limiting this relay",
      retryAfterSeconds: rateLimitWait(res, json),
    };
  }
  if (res.status >= 500 || (res.status >= 300 && res.status < 400)) {
    return { ok: false, permanent: false, status: res.status, error: `Ortto answered ${res.status}` };
  }
  // The relay's own fault, not the page's: a revoked key, a wrong region or base URL. Queued (so
  // nothing is lost while an operator fixes it) behind the site's circuit, and logged with the status.
  if (KEY_FAULTS.has(res.status)) {
    return {
      ok: false,
      permanent: false,
      status: res.status,
      keyRefused: true,
      error: `Ortto refuses this site's key (${res.status}): check the site's key secret and ORTTO_REGION`,
    };
  }
  if (res.status === 408) return { ok: false, permanent: false, status: 408, error: "Ortto answered 408" };
  const details = (json as { details?: unknown } | undefined)?.details;
  const message = (orttoMessage(json) ?? `Ortto answered ${res.status}`).slice(0, MAX_ORTTO_TEXT);
  return {
    ok: false,
    permanent: true,
    status: res.status,
    error: message,
    // One per activity at most: the consumer reads which activities Ortto refused from them.
    details: Array.isArray(details) ? details.slice(0, MAX_ACTIVITIES) : undefined,
  };
}

export type Failure = Extract<UpstreamResult, { ok: false }>;

/** What became of a forward: Ortto's results for what it took, and the failure that stopped the rest. */
export interface ForwardOutcome {
  results: ActivitiesResponse["activities"];
  /** The activities not delivered (from the failed request on), when `failure` is set. */
  remaining: ActivityInput[];
  failure?: Failure;
  status?: number;
}

/**
 * Forwards validated activities to Ortto, split into requests it accepts, and joins the
 * per-activity results in the original order. Stops at the first failure and says what is left.
 * `beforeEach` (the queue consumer's pacing) runs before each request and may stop it with a failure;
 * `afterEach` sees each answer (the senders note it in the isolate's budget): this module keeps no state.
 */
export async function forwardActivities(
  config: RelayConfig,
  apiKey: string,
  request: Omit<ActivitiesRequest, "activities">,
  activities: ActivityInput[],
  beforeEach?: () => Promise<Failure | undefined>,
  afterEach?: (result: UpstreamResult) => Promise<void>,
): Promise<ForwardOutcome> {
  const results: ActivitiesResponse["activities"] = [];
  // The common case is one request: serialised once, and split only if it turns out too large.
  const whole = activities.length <= MAX_ACTIVITIES ? JSON.stringify({ ...request, activities }) : undefined;
  const fits = whole !== undefined && (whole.length * 3 <= MAX_BODY_BYTES - 1024 || utf8.encode(whole).length <= MAX_BODY_BYTES - 1024);
  const chunks = fits ? [activities] : chunkActivities(activities);
  let status: number | undefined;
  for (const [i, chunk] of chunks.entries()) {
    const held = await beforeEach?.();
    const result = held ?? (await post(config, apiKey, fits ? (whole as string) : JSON.stringify({ ...request, activities: chunk })));
    if (!held) await afterEach?.(result);
    status = result.status;
    if (!result.ok) return { results, remaining: chunks.slice(i).flat(), failure: result, status };
    results.push(...result.body.activities);
  }
  return { results, remaining: [], status };
}
