import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createMiddleware } from "hono/factory";
import type { ActivitiesRequest, ActivityInput, ActivityResult } from "../../shared/activities.ts";
import { MAX_BODY_BYTES } from "../../shared/activities.ts";
import { CONSENT_FIELDS } from "../../shared/field-ids.ts";
import { crawlerFilter, ipRateLimit, trustedSender } from "../abuse.ts";
import { afterAnswer, laterOf } from "../after.ts";
import { pacerOf } from "../budget/binding.ts";
import { KEY_REFUSED_REASON, type QueueReason } from "../budget/gate.ts";
import { DEFAULT_SITE, relayConfig, siteFor, siteKey } from "../config.ts";
import { deadLetterFailed } from "../delivery/dead-letters.ts";
import { PartialSendError, QUEUED, sendMessages, toMessages } from "../delivery/messages.ts";
import type { DeliveryStats } from "../delivery/stats.ts";
import type { AppEnv } from "../env.ts";
import { loggablePath, RelayError } from "../errors.ts";
import { verifyIdentity } from "../identity.ts";
import type { Issue } from "../intake/friendly.ts";
import { readActivities } from "../intake/index.ts";
import { ledgerOf } from "../limits/counts.ts";
import { takeLimits } from "../limits/index.ts";
import { forwardActivities, type UpstreamResult } from "../upstream.ts";
import { enrichActivities, locationFor } from "./enrich.ts";

/** text/plain is what a page sends to avoid a CORS preflight; application/json is what servers send. */
const ACCEPTED_TYPES = new Set(["application/json", "text/plain", ""]);
const CONSENT = Object.keys(CONSENT_FIELDS);

/**
 * The origin must belong to a site the relay serves; that site decides the key and the
 * activities. A trusted server may send no Origin: it speaks for the default site.
 */
const siteOfOrigin = createMiddleware<AppEnv>(async (c, next) => {
  const origin = c.req.header("origin");
  const config = relayConfig(c.env);
  const site = !origin && c.get("server") ? config.sites.find((s) => s.name === DEFAULT_SITE) : siteFor(config, origin);
  if (!site) {
    throw new RelayError(
      403,
      origin ? `Origin ${origin.slice(0, 100)} is not allowed to send activities` : "Requests must come from an allowed Origin",
      [{ path: "headers.origin", message: "expected one of ALLOWED_ORIGINS (or of a site in the catalogue)" }],
      { reason: "origin" },
    );
  }
  c.set("site", site);
  await next();
});

/** The body must be JSON (a server's) or text (a page's, sent so as to need no CORS preflight). */
const bodyType = createMiddleware<AppEnv>(async (c, next) => {
  const type = (c.req.header("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (!ACCEPTED_TYPES.has(type)) {
    throw new RelayError(415, `Content-Type ${type} is not accepted`, [
      { path: "headers.content-type", message: "expected application/json or text/plain" },
    ]);
  }
  await next();
});

/**
 * Puts keyed activities on the delivery queue; if that fails, the page is told to send again.
 * A request over ~250 kB takes several sendBatch calls, and one can fail after others went
 * through. The re-send of the same body merges in Ortto what was queued when the sender gave
 * `key` and `created`. Activities the relay keyed or dated at receipt would get a new key or
 * `created` on the re-send, so they are queued last (in the final sendBatch call while they fit
 * in one): a failure before it has queued none of them. `at` names an activity by its place in the
 * request as the sender wrote it (the activities here may be some of the request's: the rest were
 * refused, or forwarded already).
 */
async function enqueue(
  env: AppEnv["Bindings"],
  requestId: string,
  site: string,
  request: Omit<ActivitiesRequest, "activities">,
  activities: ActivityInput[],
  relayDated: ReadonlySet<ActivityInput>,
  stats: DeliveryStats,
  at: (activity: ActivityInput) => string,
) {
  const ordered = [...activities.filter((a) => !relayDated.has(a)), ...activities.filter((a) => relayDated.has(a))];
  const messages = toMessages(requestId, site, request, ordered);
  try {
    await sendMessages(env.DELIVERY_QUEUE, messages);
    stats.queued += activities.length;
  } catch (err) {
    const sent = err instanceof PartialSendError ? err.sent : 0;
    const queued = messages.slice(0, sent).reduce((n, m) => n + m.activities.length, 0);
    stats.queued += queued;
    const taken = new Set(ordered.slice(0, queued));
    // Those the relay keyed cannot merge with a re-send: the answer names them, not to be sent again.
    const keyedHere = activities.filter((a) => taken.has(a) && relayDated.has(a));
    throw new RelayError(
      503,
      !queued
        ? "Ortto is unavailable and the delivery queue could not take the activities; nothing was recorded, send again later"
        : keyedHere.length
          ? `The delivery queue took ${queued} of ${activities.length} activities, then failed; send again all but those named in details (they have no key and created of yours, so a re-send would be a new activity)`
          : `The delivery queue took ${queued} of ${activities.length} activities, then failed; send the same body again: what it took merges in Ortto`,
      keyedHere.length ? keyedHere.map((a) => ({ path: at(a), message: "queued: do not send again" })) : undefined,
      { headers: { "Retry-After": "30" } },
    );
  }
}

/**
 * Keeps the activities Ortto answered "failed" for in the dead-letter queue. If that queue
 * cannot take them, they go back on the delivery queue (Ortto is asked again, and the queue
 * consumer dead-letters what it still refuses); either way the failure is logged, never dropped
 * unseen. The page's answer already says "failed" for each of them.
 */
async function keepFailed(
  env: AppEnv["Bindings"],
  log: AppEnv["Variables"]["log"],
  from: Parameters<typeof deadLetterFailed>[1],
  activities: ActivityInput[],
  results: ActivityResult[],
  stats: DeliveryStats,
) {
  try {
    await deadLetterFailed(env, from, activities, results, stats);
  } catch (err) {
    const failed = activities.filter((_, i) => results[i]?.status === "failed");
    let requeued = false;
    try {
      await sendMessages(env.DELIVERY_QUEUE, toMessages(from.request_id, from.site ?? DEFAULT_SITE, from, failed));
      requeued = true;
    } catch {
      // logged below
    }
    log.reason = "dead_letter_failed";
    console.log(
      JSON.stringify({
        event: "dead_letter_failed",
        request_id: from.request_id,
        activities: failed.length,
        requeued,
        error: err instanceof Error ? err.message.slice(0, 200) : "unknown",
      }),
    );
  }
}

/** Each upstream answer of an inline send, noted in the isolate's budget (upstream.ts keeps no state). */
const noteIn = (budget: AppEnv["Variables"]["budget"]) => async (result: UpstreamResult) => budget.noteUpstream(result);

const QUEUED_HEADER = { "X-Relay-Outcome": "queued" };

/**
 * `POST /v1/activities/create`: the same path and body as Ortto's own endpoint, minus the key.
 * Each step refuses with a 4xx that names the field and the rule; only a request that passes
 * every one is forwarded (Ortto bans an IP after 15 bad requests in 15 s).
 */
export const activities = new Hono<AppEnv>().post(
  "/v1/activities/create",
  trustedSender,
  siteOfOrigin,
  bodyType,
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
    const dryRun = c.req.header("x-relay-dry-run");
    // A dry run (npm run smoke) validates and enriches as for real and answers what would be sent,
    // forwarding, queueing and counting nothing; only a trusted server may ask for one.
    if (dryRun !== undefined && (dryRun !== "1" || c.get("server") !== true)) {
      throw new RelayError(400, "X-Relay-Dry-Run is for a trusted server: send 1 with Authorization: Bearer <SERVER_TOKEN>", [
        { path: "headers.x-relay-dry-run", message: "expected 1, with a server token" },
      ]);
    }

    // The snippet's shorthands (`logged-in`, `email` …) and the catalogue's friendly names become Ortto's ids
    // here, so the page need not carry the code.
    // Each activity is judged on its own: the valid ones go on, and the answer names each refused one.
    const intake = readActivities(await c.req.text(), c.req.raw, c.get("server") !== true);
    const { activities: read, identity_token: token, ...request } = intake.body;
    const refused = intake.refused;
    /** The valid activities, and each one's index in the request. */
    let valid = read;
    let kept = intake.kept;
    /** A problem with the activities going on (`activities.j…`, j among them), named at its index in the request, as the sender wrote it. */
    const inRequest = (problem: Issue) =>
      intake.named({ ...problem, path: problem.path.replace(/^activities\.(\d+)/, (_, j) => `activities.${kept[Number(j)]}`) });
    /** The activities refused so far, as a whole refusal's details name them beside its own. */
    const refusedSoFar = () => refused.map(({ path, message }) => ({ path, message }));
    /**
     * Refuses the activities at `positions` among those going on, each with its problem; when that
     * leaves none, the request is refused as a whole with `whole` (nothing is forwarded). Returns the
     * filter that takes them out of a list of the activities going on.
     */
    const refuse = (positions: number[], problem: (j: number) => Issue, whole?: () => RelayError) => {
      if (whole && positions.length === kept.length) throw whole();
      for (const j of positions) refused.push({ index: kept[j] as number, ...inRequest(problem(j)) });
      const out = new Set(positions);
      kept = kept.filter((_, j) => !out.has(j));
      return (_: unknown, j: number) => !out.has(j);
    };
    log.activities = valid.length;
    if (site.activities) {
      const notForSite = valid.flatMap((a, j) => (site.activities?.has(a.activity_id) ? [] : [j]));
      const problem = (j: number) => ({
        path: `activities.${j}.activity_id`,
        message: `expected one of the activities of site ${site.name}`,
      });
      if (notForSite.length)
        valid = valid.filter(
          refuse(
            notForSite,
            problem,
            () =>
              new RelayError(
                400,
                `Activity ${valid[notForSite[0] as number]?.activity_id} is not enabled for site ${site.name}`,
                [...refusedSoFar(), ...notForSite.map((j) => inRequest(problem(j)))],
                { reason: "site_activity" },
              ),
          ),
        );
    }

    const server = c.get("server") === true;
    const isolate = c.get("isolate");
    // Signed identity: with IDENTITY_SECRET set, a page can only speak for the person its backend signed
    // (a trusted server speaks for anyone it sends).
    if (config.identitySecret && !server) {
      const failure = await verifyIdentity(
        config.identitySecret,
        token,
        { merge_by: request.merge_by, activities: valid },
        config.identityField,
      );
      if (failure) {
        throw new RelayError(401, `Unverified identity: ${failure.reason}`, [inRequest({ path: failure.path, message: failure.reason })], {
          reason: "identity",
        });
      }
    } else if (!config.identitySecret && !isolate.openModeLogged) {
      isolate.openModeLogged = true;
      console.log(
        JSON.stringify({
          event: "open_mode",
          message: `IDENTITY_SECRET is not set: identities are not verified; each client network may name ${config.peoplePerNetwork} people an hour`,
        }),
      );
    }

    // A stranger must not be able to unsubscribe someone: consent fields need a verified identity (or a trusted server).
    if (!config.identitySecret && !server) {
      for (const [j, a] of valid.entries()) {
        const field = CONSENT.find((f) => a.fields?.[f] !== undefined);
        if (field) {
          throw new RelayError(
            403,
            `Consent field ${field} can only be set for a verified identity (IDENTITY_SECRET)`,
            [inRequest({ path: `activities.${j}.fields.${field}`, message: "expected a verified identity to change consent" })],
            { reason: "consent" },
          );
        }
      }
    }

    const { key: apiKey, secret } = siteKey(c.env, site.name);
    if (!apiKey) {
      throw new RelayError(
        503,
        `The relay has no Ortto key: set the ${secret} secret (wrangler secret put ${secret})`,
        [{ path: secret, message: "expected a secret with the Custom API data source key" }],
        { reason: "no_key" },
      );
    }

    // The activities the relay keys or dates itself, which a re-send cannot merge (see enqueue).
    const relayDated = new Set(valid.filter((a) => a.created === undefined || a.key === undefined));
    let enriched = enrichActivities(valid, locationFor(c.req.raw, config.geoMode), new Date());
    if (dryRun) {
      c.set("outcome", "dry_run");
      return c.json({
        dry_run: true,
        upstream: new URL(config.base).host,
        delivery: config.delivery,
        site: site.name,
        ...request,
        activities: enriched,
        ...(refused.length ? { refused } : {}),
      });
    }

    // Counted once the activities are keyed, so that a re-send is not counted twice. In open mode a
    // page's request also spends its network's budget of people; a trusted server's does not.
    const counts = c.get("limits");
    const ledger = ledgerOf(c.env, config.ledgerTimeoutMs);
    const limits = await takeLimits(counts, ledger, enriched, {
      contactActivityLimit: config.contactActivityLimit,
      people: config.identitySecret || server ? undefined : { network: c.get("network"), budget: config.peoplePerNetwork },
    }).catch((err: unknown) => {
      if (!(err instanceof RelayError) || !refused.length) throw err;
      // Refused whole by the limits: named at the request's indexes, beside the activities refused before.
      throw new RelayError(err.status, err.sentence, [...refusedSoFar(), ...(err.details ?? []).map(inRequest)], {
        reason: err.reason,
        headers: err.headers,
      });
    });
    // Over a person's daily limit: refused in the answer (takeLimits refused the request itself when all are).
    if (limits.over.length) {
      const over = new Map(limits.over.map((o) => [o.position, o.message]));
      enriched = enriched.filter(
        refuse([...over.keys()], (j) => ({ path: `activities.${j}.activity_id`, message: over.get(j) as string })),
      );
    }
    refused.sort((a, b) => a.index - b.index);
    if (refused.length) {
      // The log line names what was refused, as a refusal's does (paths, never values), and counts it.
      log.refused = refused.length;
      log.paths = refused.slice(0, 10).map((r) => loggablePath(r.path.replace(/^a\./, "activities.")));
    }
    /** An activity as the sender wrote it: `activities.3` (`a.3` in the snippet's request). */
    // (Looked up only when a queue failure names activities.)
    const at = (a: ActivityInput) => inRequest({ path: `activities.${enriched.indexOf(a)}`, message: "" }).path;
    /** What the answer adds when activities were refused: how many went on, and each refused one. */
    const partly = (taken: { forwarded: number; queued?: number }) => (refused.length ? { ...taken, refused } : {});
    log.contacts = limits.contacts;
    // The counts reach the shared ledger after the answer, coalesced with other requests'.
    if (limits.report) afterAnswer(c, counts.flushSoon(ledger));

    // DELIVERY=queue: the lowest latency, no per-activity results. Under load (the account's
    // request budget is short, worker/budget/gate.ts) the same: no inline try, full requests later.
    // While Ortto's recent 4xx answers hold a window open, or before this isolate has heard from the
    // pacer, an inline send needs the pacer's permit too.
    const budget = c.get("budget");
    const pacer = pacerOf(c.env);
    const later = laterOf(c);
    let permit: string | undefined;
    let queue: QueueReason | undefined;
    if (config.delivery !== "queue") {
      queue = budget.coalescing(site.name, config.maxRps, pacer, later);
      if (!queue && budget.mustAskPacer(pacer)) {
        const admitted = await budget.admitInline(site.name, config.timeoutMs + 1000, config.pacerTimeoutMs, pacer, later);
        if ("permit" in admitted) permit = admitted.permit;
        else queue = admitted.queue;
      }
    }
    if (config.delivery === "queue" || queue) {
      if (queue) log.reason = queue;
      await enqueue(c.env, c.get("requestId"), site.name, request, enriched, relayDated, isolate.delivery, at);
      c.set("outcome", "queued");
      log.queued = enriched.length;
      // "queued", in the body and the header: nothing was forwarded yet.
      return c.json({ activities: enriched.map(() => QUEUED), ...partly({ forwarded: 0, queued: enriched.length }) }, 202, QUEUED_HEADER);
    }

    const started = Date.now();
    const outcome = await forwardActivities(config, apiKey, request, enriched, undefined, noteIn(budget));
    // After the answer, every sender hears what Ortto said: a 429 pauses them all (the queue consumer
    // above all); a 4xx makes them ask the pacer before their requests for 15 s; a refused key opens the site's circuit.
    budget.reportInline(outcome.failure?.status, site.name, permit, pacer, later);
    log.upstream_ms = Date.now() - started;
    log.upstream_status = outcome.status;
    log.forwarded = outcome.results.length;

    if (!outcome.failure) {
      c.set("outcome", "forwarded");
      const from = { request_id: c.get("requestId"), site: site.name, ...request };
      // Rare (Ortto answers "failed" for an unknown person_id or its own daily limit), so awaited;
      // the page's answer does not depend on it.
      await keepFailed(c.env, log, from, enriched, outcome.results, isolate.delivery);
      // 207 when some were refused: a sender (the snippet under data-debug) shows any answer but a plain 200.
      return refused.length
        ? c.json({ activities: outcome.results, ...partly({ forwarded: outcome.results.length }) }, 207)
        : c.json({ activities: outcome.results }, 200);
    }
    const failure = outcome.failure;
    if (failure.permanent) {
      const ortto = Array.isArray(failure.details)
        ? failure.details.slice(0, 10).map((d) => ({
            path: "body",
            message: String((d as { error?: unknown })?.error ?? JSON.stringify(d)).slice(0, 300),
          }))
        : [];
      // What the relay refused itself is named too: nothing of the batch went on.
      const details = [...refusedSoFar(), ...ortto];
      throw new RelayError(failure.status as 400, `Ortto refused the activities: ${failure.error}`, details.length ? details : undefined, {
        reason: "ortto_refused",
      });
    }
    // Ortto is slow, failing or rate-limiting: what it has not taken waits in the queue and is
    // retried until it is delivered. The browser's part is done.
    log.reason = failure.keyRefused ? KEY_REFUSED_REASON : failure.error;
    await enqueue(c.env, c.get("requestId"), site.name, request, outcome.remaining, relayDated, isolate.delivery, at);
    c.set("outcome", "queued");
    log.queued = outcome.remaining.length;
    return c.json(
      {
        activities: [...outcome.results, ...outcome.remaining.map(() => QUEUED)],
        ...partly({ forwarded: outcome.results.length, queued: outcome.remaining.length }),
      },
      202,
      QUEUED_HEADER,
    );
  },
);
