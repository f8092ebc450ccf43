/**
 * What the request path and the queue consumer both do with what Ortto will not take: dead
 * letters, with the log line and Analytics Engine point that go with them.
 */
import type { ActivityInput, ActivityResult } from "../../shared/activities.ts";
import { DEFAULT_SITE } from "../config.ts";
import type { RelayEnv } from "../env.ts";
import { writePoint } from "../log.ts";
import { type DeliveryMessage, sendMessages, toMessages } from "./messages.ts";
import type { DeliveryStats } from "./stats.ts";

/** Ortto's error text is not ours to bound; a dead letter must stay under the 128 KB message limit. */
export const MAX_REASON = 500;

/** One JSON line for a delivery event (the request path has its own: worker/log.ts). */
export function logDelivery(event: string, fields: Record<string, unknown>) {
  console.log(JSON.stringify({ event, ...fields }));
}

/**
 * The consumer's Analytics Engine points, beside the request path's (worker/log.ts): activities
 * delivered from the queue (double2, as "forwarded") and dead-lettered (double1), per site, so that
 * one query shows delivered against queued and another alerts on dead letters before they expire.
 */
export function countDelivery(env: RelayEnv, site: string | undefined, outcome: "delivered" | "dead_lettered", activities: number) {
  writePoint(env, {
    indexes: [site ?? DEFAULT_SITE],
    blobs: [outcome, "", ""],
    doubles: [activities, outcome === "delivered" ? activities : 0, 0],
  });
}

/**
 * Keeps the activities Ortto answered `"status": "failed"` for (in a 200: an unknown person_id,
 * its own daily limit) in the dead-letter queue with Ortto's answer, so none is dropped unseen.
 * Returns how many there were.
 */
export async function deadLetterFailed(
  env: RelayEnv,
  from: Pick<DeliveryMessage, "request_id" | "site" | "async" | "merge_by" | "replays">,
  activities: ActivityInput[],
  results: ActivityResult[],
  stats: DeliveryStats,
): Promise<number> {
  const failed: { activity: ActivityInput; result: ActivityResult }[] = [];
  for (const [i, result] of results.entries()) {
    const activity = activities[i];
    if (result?.status === "failed" && activity) failed.push({ activity, result });
  }
  if (!failed.length) return 0;
  const reason = `Ortto answered status "failed" (person_status ${failed.map((f) => f.result.person_status).join(", ")})`.slice(
    0,
    MAX_REASON,
  );
  const messages = toMessages(
    from.request_id,
    from.site ?? DEFAULT_SITE,
    { async: from.async, merge_by: from.merge_by },
    failed.map((f) => f.activity),
  );
  await sendMessages(
    env.DEAD_LETTERS,
    // The replay count travels on: a message Ortto keeps answering "failed" must not loop through replays.
    messages.map((m) => ({ ...m, ...(from.replays ? { replays: from.replays } : {}), dead_reason: reason })),
  );
  stats.dead_lettered += messages.length;
  countDelivery(env, from.site, "dead_lettered", failed.length);
  logDelivery("dead_lettered", { request_id: from.request_id, activities: failed.length, reason });
  return failed.length;
}
