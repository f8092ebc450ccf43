import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createMiddleware } from "hono/factory";
import catalogue from "../../relay.config.ts";
import {
  type ActivitiesRequest,
  type ActivityInput,
  activitiesRequestSchema,
  describeIssue,
  MAX_BODY_BYTES,
} from "../../shared/activities.ts";
import { CONSENT_FIELDS } from "../../shared/field-ids.ts";
import { crawlerFilter, ipRateLimit } from "../abuse.ts";
import { coalescing } from "../budget/gate.ts";
import { relayConfig, siteFor, siteKey } from "../config.ts";
import { deadLetterFailed } from "../delivery/consumer.ts";
import { QUEUED, sendMessages, toMessages } from "../delivery/messages.ts";
import { deliveryStats } from "../delivery/stats.ts";
import type { AppEnv } from "../env.ts";
import { RelayError } from "../errors.ts";
import { verifyIdentity } from "../identity.ts";
import { takeContactLimits } from "../limits/index.ts";
import { forwardActivities } from "../upstream.ts";
import { enrichActivities, locationFor } from "./enrich.ts";

/** Built once per isolate: per-activity schemas for every catalogue entry. */
const requestSchema = activitiesRequestSchema(catalogue);

/** text/plain is what a page sends to avoid a CORS preflight; application/json is what servers send. */
const ACCEPTED_TYPES = new Set(["application/json", "text/plain", ""]);
const CONSENT = Object.keys(CONSENT_FIELDS);

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new RelayError(400, "The body is not valid JSON", [{ path: "body", message: "expected a JSON object with an activities array" }]);
  }
}

/** The origin must belong to a site the relay serves; that site decides the key and the activities. */
const siteOfOrigin = createMiddleware<AppEnv>(async (c, next) => {
  const origin = c.req.header("origin");
  const site = siteFor(relayConfig(c.env), origin);
  if (!site) {
    c.get("log").reason = "origin";
    throw new RelayError(
      403,
      origin ? `Origin ${origin.slice(0, 100)} is not allowed to send activities` : "Requests must come from an allowed Origin",
      [{ path: "headers.origin", message: "expected one of ALLOWED_ORIGINS (or of a site in the catalogue)" }],
    );
  }
  c.set("site", site);
  const type = (c.req.header("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (!ACCEPTED_TYPES.has(type)) {
    throw new RelayError(415, `Content-Type ${type} is not accepted`, [
      { path: "headers.content-type", message: "expected application/json or text/plain" },
    ]);
  }
  await next();
});

/** Puts keyed activities on the delivery queue; if even that fails, the browser is told to send again. */
async function enqueue(
  env: AppEnv["Bindings"],
  requestId: string,
  site: string,
  request: Omit<ActivitiesRequest, "activities">,
  activities: ActivityInput[],
) {
  try {
    await sendMessages(env.DELIVERY_QUEUE, toMessages(requestId, site, request, activities));
    deliveryStats.queued += activities.length;
  } catch {
    throw new RelayError(
      503,
      "Ortto is unavailable and the delivery queue could not take the activities; nothing was recorded, send again later",
      undefined,
      {
        "Retry-After": "30",
      },
    );
  }
}

let openModeLogged = false;

/**
 * `POST /v1/activities/create`: the same path and body as Ortto's own endpoint, minus the key.
 * Each step refuses with a 4xx that names the field and the rule; only a request that passes
 * every one is forwarded (Ortto bans an IP after 15 bad requests in 15 s).
 */
export const activities = new Hono<AppEnv>().post(
  "/v1/activities/create",
  siteOfOrigin,
  ipRateLimit,
  crawlerFilter,
  // Enforced while reading: a body over the limit is refused without being buffered whole.
  bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: () => {
      throw new RelayError(413, "The body is larger than 2 MB (Ortto's limit per request)", [
        { path: "body", message: "expected at most 2 MB" },
      ]);
    },
  }),
  async (c) => {
    const config = relayConfig(c.env);
    const site = c.get("site");
    const log = c.get("log");

    const parsed = requestSchema.safeParse(parseJson(await c.req.text()));
    if (!parsed.success) {
      const details = parsed.error.issues.map(describeIssue);
      const first = details[0];
      log.reason = "schema";
      throw new RelayError(
        400,
        `Invalid request: ${first?.path} ${first?.message}${details.length > 1 ? ` (and ${details.length - 1} more)` : ""}`,
        details,
      );
    }
    const { activities: valid, identity_token: token, ...request } = parsed.data as ActivitiesRequest;
    log.activities = valid.length;
    const notForSite = site.activities ? valid.findIndex((a) => !site.activities?.has(a.activity_id)) : -1;
    if (notForSite >= 0) {
      log.reason = "site_activity";
      throw new RelayError(400, `Activity ${valid[notForSite]?.activity_id} is not enabled for site ${site.name}`, [
        { path: `activities.${notForSite}.activity_id`, message: `expected one of the activities of site ${site.name}` },
      ]);
    }

    // Signed identity: with IDENTITY_SECRET set, a page can only speak for the person its backend signed.
    if (config.identitySecret) {
      const failure = await verifyIdentity(config.identitySecret, token, { merge_by: request.merge_by, activities: valid });
      if (failure) {
        c.set("outcome", "identity_failed");
        log.reason = "identity";
        throw new RelayError(401, `Unverified identity: ${failure.reason}`, [{ path: failure.path, message: failure.reason }]);
      }
    } else if (!openModeLogged) {
      openModeLogged = true;
      console.log(JSON.stringify({ event: "open_mode", message: "IDENTITY_SECRET is not set: identities are not verified" }));
    }

    // A stranger must not be able to unsubscribe someone: consent fields need a verified identity.
    if (!config.identitySecret) {
      for (const [i, a] of valid.entries()) {
        const field = CONSENT.find((f) => a.fields?.[f] !== undefined);
        if (field) {
          log.reason = "consent";
          throw new RelayError(403, `Consent field ${field} can only be set for a verified identity (IDENTITY_SECRET)`, [
            { path: `activities.${i}.fields.${field}`, message: "expected a verified identity to change consent" },
          ]);
        }
      }
    }

    const { key: apiKey, secret } = siteKey(c.env, site.name);
    if (!apiKey) {
      log.reason = "no_key";
      throw new RelayError(503, `The relay has no Ortto key: set the ${secret} secret (wrangler secret put ${secret})`, [
        { path: secret, message: "expected a secret with the Custom API data source key" },
      ]);
    }

    const enriched = enrichActivities(valid, locationFor(c.req.raw, config.geoMode), new Date());

    // Counted once the activities are keyed, so that a re-send is not counted twice.
    const contacts = await takeContactLimits(c.env, enriched, config.contactActivityLimit).catch((err) => {
      if (err instanceof RelayError && err.status === 429) c.set("outcome", "throttled");
      log.reason = "contact_limit";
      throw err;
    });
    log.people = contacts.slice(0, 10).map((hash) => hash.slice(0, 12));

    // DELIVERY=queue: the lowest latency, no per-activity results. Under load (the account's
    // request budget is short, worker/budget/gate.ts) the same: no inline try, full requests later.
    if (config.delivery === "queue" || coalescing(c)) {
      await enqueue(c.env, c.get("requestId"), site.name, request, enriched);
      c.set("outcome", "queued");
      log.queued = enriched.length;
      return c.json({ activities: enriched.map(() => QUEUED) }, 202);
    }

    const started = Date.now();
    const outcome = await forwardActivities(config, apiKey, request, enriched);
    log.upstream_ms = Date.now() - started;
    log.upstream_status = outcome.status;
    log.forwarded = outcome.results.length;

    if (!outcome.failure) {
      c.set("outcome", "forwarded");
      const from = { request_id: c.get("requestId"), site: site.name, ...request };
      // Rare (Ortto answers "failed" for an unknown person_id or its own daily limit), so awaited;
      // the page's answer does not depend on it.
      await deadLetterFailed(c.env, from, enriched, outcome.results).catch(() => 0);
      return c.json({ activities: outcome.results }, 200);
    }
    const failure = outcome.failure;
    if (failure.permanent) {
      c.set("outcome", "upstream_error");
      log.reason = "ortto_refused";
      const details = Array.isArray(failure.details)
        ? failure.details.map((d) => ({
            path: "body",
            message: String((d as { error?: unknown })?.error ?? JSON.stringify(d)).slice(0, 300),
          }))
        : undefined;
      throw new RelayError(failure.status as 400, `Ortto refused the activities: ${failure.error}`, details);
    }
    // Ortto is slow, failing or rate-limiting: what it has not taken waits in the queue and is
    // retried until it is delivered. The browser's part is done.
    log.reason = failure.error;
    await enqueue(c.env, c.get("requestId"), site.name, request, outcome.remaining);
    c.set("outcome", "queued");
    log.queued = outcome.remaining.length;
    return c.json({ activities: [...outcome.results, ...outcome.remaining.map(() => QUEUED)] }, 202);
  },
);
