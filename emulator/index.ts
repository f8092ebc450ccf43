/**
 * The local Ortto emulator: `POST /v1/activities/create` as the seed guide describes Ortto,
 * plus a control API under `/_emulator/` for tests (inspection, reset, fault injection) and
 * the activity feed at `/`. The relay's default upstream under `npm start` and in its tests.
 *
 *   GET  /_emulator/activities  { activities: StoredActivity[], requests, duplicates, people }
 *   GET  /_emulator/requests    the last 200 create requests: { received_at, headers, body, status, response, failures? }
 *   POST /_emulator/reset       forgets people, activities, requests, faults and counters (the account's definitions stay;
 *                               `?account=1` forgets them too, as a brand-new account)
 *
 * and the account's definitions API (emulator/account.ts): /v1/definitions/activity/create and
 * /modify, /v1/person/custom-field/create and /get, /v1/instance-schema/get.
 *   GET  /_emulator/faults      the current fault settings
 *   POST /_emulator/faults      { failRate 0–1, statuses [400–599], hangMs, downUntil (epoch ms), tryInSeconds, failKeys, maxRps,
 *                                 failNext, refuseKey (401/403/404), detailsPerActivity, seed? }
 *   GET  /_emulator/rate        create requests per calendar second: { max_rps, rate_limited, seconds: [{ second, requests, rate_limited }] }
 *   GET  /                      the activity feed (HTML)
 */
import { Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import * as z from "zod/mini";
import { MAX_BODY_BYTES } from "../shared/index.ts";
import { account } from "./account.ts";
import { renderFeed } from "./feed.ts";
import { ingest, OrttoError } from "./ingest.ts";
import { countRequest, DEFAULT_FAULTS, logRequest, reset, setFaults, state } from "./store.ts";

type Answer = { status: ContentfulStatusCode; body: unknown; failures?: string[] };

/** Ortto's error envelope. */
function envelope(code: number, error: string, details?: unknown[]) {
  return { request_id: crypto.randomUUID(), code, error, ...(details ? { details } : {}) };
}

/** What an injected failure answers: Ortto's real 429 body, or an envelope. */
function faultAnswer(status: number): Answer {
  if (status === 429)
    return { status, body: { error: { code: "rate-limit", message: "rate limit", "try-in-seconds": state.faults.tryInSeconds } } };
  const message = status >= 500 ? "Internal server error (injected by the emulator)" : "Request failed (injected by the emulator)";
  return { status: status as ContentfulStatusCode, body: envelope(status, message) };
}

function carriesKey(body: unknown, keys: string[]): boolean {
  const activities = (body as { activities?: unknown } | null)?.activities;
  return Array.isArray(activities) && activities.some((a) => keys.includes((a as { key?: unknown } | null)?.key as string));
}

/** A poison request's answer: with `detailsPerActivity`, Ortto's `details` say which activity it refused. */
function poisonAnswer(body: unknown, keys: string[]): Answer {
  const status = state.faults.statuses[0] ?? 500;
  if (status !== 400 || !state.faults.detailsPerActivity) return faultAnswer(status);
  const activities = (body as { activities: unknown[] }).activities;
  const details = activities.map((a) =>
    keys.includes((a as { key?: unknown } | null)?.key as string)
      ? { status: "invalid", error: "Activity refused (injected by the emulator)" }
      : { status: "ok", error: "" },
  );
  return { status: 400, body: envelope(400, "Request failed (injected by the emulator)", details) };
}

function answerCreate(apiKey: string, tooLarge: boolean, text: string, now: number, overBudget: boolean): Answer {
  const { faults } = state;
  // The account's request budget is checked before anything else, as Ortto's gateway does.
  if (overBudget) return faultAnswer(429);
  // Injected failures come first: an outage or a failing Ortto answers before looking at the request.
  if (now < faults.downUntil) return { status: 503, body: envelope(503, "Service unavailable (emulated outage)") };
  if (faults.failNext > 0) {
    faults.failNext--;
    return faultAnswer(faults.statuses[0] ?? 500);
  }
  if (faults.refuseKey) return { status: faults.refuseKey as ContentfulStatusCode, body: envelope(faults.refuseKey, "Invalid API key") };
  if (faults.failRate > 0 && state.random() < faults.failRate) {
    return faultAnswer(faults.statuses[Math.floor(state.random() * faults.statuses.length)] ?? 500);
  }
  if (!apiKey) return { status: 401, body: envelope(401, "Missing or invalid X-Api-Key header") };
  if (tooLarge) return { status: 413, body: envelope(413, `Request body is larger than ${MAX_BODY_BYTES / 1024 / 1024} MB`) };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { status: 400, body: envelope(400, "Request body is not valid JSON") };
  }
  if (faults.failKeys.length && carriesKey(body, faults.failKeys)) return poisonAnswer(body, faults.failKeys);
  try {
    const { response, failures } = ingest(body, apiKey, now);
    return { status: 200, body: response, failures };
  } catch (err) {
    if (err instanceof OrttoError)
      return { status: err.status as ContentfulStatusCode, body: envelope(err.status, err.message, err.details) };
    throw err;
  }
}

const app = new Hono();

app.post("/v1/activities/create", async (c) => {
  const now = Date.now();
  state.requestCount++;
  const overBudget = countRequest(now);
  // The body's size is checked before it is decoded, as Ortto refuses anything over 2 MB.
  const declared = Number(c.req.header("content-length") ?? 0);
  const bytes = declared > MAX_BODY_BYTES ? undefined : new Uint8Array(await c.req.arrayBuffer());
  const tooLarge = !bytes || bytes.byteLength > MAX_BODY_BYTES;
  const text = bytes && !tooLarge ? new TextDecoder().decode(bytes) : "";
  const apiKey = c.req.header("x-api-key")?.trim() ?? "";

  const answer = answerCreate(apiKey, tooLarge, text, now, overBudget);
  let logged: unknown = tooLarge ? `(${declared || bytes?.byteLength} bytes: over 2 MB, not kept)` : text;
  try {
    logged = JSON.parse(text);
  } catch {}
  logRequest({
    received_at: new Date(now).toISOString(),
    headers: Object.fromEntries(c.req.raw.headers),
    body: logged,
    status: answer.status,
    response: answer.body,
    ...(answer.failures?.length ? { failures: answer.failures } : {}),
  });
  // The hang comes after ingestion: a client that times out has still had its activities
  // stored, as with a slow Ortto, so a retry is merged only if it carries key + created.
  if (state.faults.hangMs > 0) await new Promise((resolve) => setTimeout(resolve, state.faults.hangMs));
  return c.json(answer.body, answer.status);
});

app.route("/", account);

app.get("/_emulator/activities", (c) =>
  c.json({
    activities: state.activities,
    requests: state.requestCount,
    duplicates: state.duplicates,
    people: [...state.people.values()],
  }),
);

app.get("/_emulator/requests", (c) => c.json(state.requests));

app.get("/_emulator/rate", (c) =>
  c.json({
    max_rps: state.faults.maxRps,
    rate_limited: state.rateLimited,
    seconds: [...state.perSecond].map(([second, count]) => ({ second, ...count })),
  }),
);

app.post("/_emulator/reset", (c) => {
  reset(c.req.query("account") === "1");
  return c.json({ ok: true });
});

const FaultsInput = z.strictObject({
  failRate: z.optional(z.number().check(z.gte(0), z.lte(1))),
  statuses: z.optional(z.array(z.int().check(z.gte(400), z.lte(599))).check(z.minLength(1))),
  hangMs: z.optional(z.int().check(z.gte(0), z.lte(600_000))),
  downUntil: z.optional(z.number().check(z.gte(0))),
  tryInSeconds: z.optional(z.int().check(z.gte(0), z.lte(3600))),
  failKeys: z.optional(z.array(z.string()).check(z.maxLength(1000))),
  maxRps: z.optional(z.int().check(z.gte(0), z.lte(10_000))),
  failNext: z.optional(z.int().check(z.gte(0), z.lte(10_000))),
  refuseKey: z.optional(z.union([z.literal(0), z.literal(401), z.literal(403), z.literal(404)])),
  detailsPerActivity: z.optional(z.boolean()),
  seed: z.optional(z.int()),
});

app.get("/_emulator/faults", (c) => c.json(state.faults));

/** Replaces every fault setting; an omitted one goes back to its default (no faults). */
app.post("/_emulator/faults", async (c) => {
  const parsed = FaultsInput.safeParse(await c.req.json().catch(() => undefined));
  if (!parsed.success) {
    const details = parsed.error.issues.map((i) => ({ status: "invalid", error: `${i.path.join(".") || "body"}: ${i.message}` }));
    return c.json(
      envelope(
        400,
        "Expected {failRate 0–1, statuses [400–599], hangMs, downUntil (epoch ms), tryInSeconds, failKeys, maxRps, seed?}",
        details,
      ),
      400,
    );
  }
  const { seed, ...settings } = parsed.data;
  setFaults({ ...DEFAULT_FAULTS, ...settings, ...(seed === undefined ? {} : { seed }) });
  return c.json(state.faults);
});

app.get("/", (c) => c.html(renderFeed()));

app.notFound((c) => c.json(envelope(404, `No route ${c.req.method} ${c.req.path} in the Ortto emulator`), 404));
app.onError((err, c) => {
  console.error("emulator error", err);
  return c.json(envelope(500, "Internal server error"), 500);
});

export default app;
