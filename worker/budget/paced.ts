/**
 * The queue consumer's way to Ortto: every request waits for a slot in the account's budget
 * (the pacer's ledger), and a 429 pauses every sender for Ortto's try-in-seconds. A short pause
 * (≤ 5 s) is sat out by the same invocation, which then sends the same messages again (so they stay
 * first tries, packed in full requests); a longer one retries them with at least that delay.
 */
import type { ActivitiesRequest, ActivityInput } from "../../shared/activities.ts";
import type { RelayConfig } from "../config.ts";
import type { RelayEnv } from "../env.ts";
import { type Failure, type ForwardOutcome, forwardActivities } from "../upstream.ts";
import { type BatchNote, pacerOf } from "./binding.ts";
import { lastBatch, pausedUntil, pauseReported } from "./gate.ts";
import type { UpstreamPacer } from "./pacer.ts";

/** The longest a consumer waits for its slot; beyond it the messages are retried with that delay. */
const MAX_WAIT_MS = 30_000;
/** How many 429s one group of messages sits out inside one invocation before it is retried. */
const MAX_HOLDS = 3;
/** The longest 429 pause sat out inside the invocation; a longer one retries the messages with that delay. */
const MAX_HOLD_MS = 5_000;
/**
 * How often a consumer woken too late for its slot (a busy isolate's timers fire late) takes
 * another before sending anyway: a late request lands in the next second, at most one over.
 */
const MAX_LATE_WAKES = 2;

const sleep = (ms: number) => (ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve());

/** Without a pacer (its binding absent or unreachable): this isolate alone keeps to the budget's spacing. */
let nextLocalSlot = 0;
async function localSlot(maxRps: number): Promise<undefined> {
  const now = Date.now();
  const at = Math.max(now, nextLocalSlot, pausedUntil());
  nextLocalSlot = at + 1000 / maxRps;
  await sleep(at - now);
  return undefined;
}

/** Waits for this request's slot; answers a failure (to retry later) when the budget is paused for longer than MAX_WAIT_MS. */
async function takeSlot(
  pacer: DurableObjectStub<UpstreamPacer> | undefined,
  maxRps: number,
  batch: BatchNote | undefined,
): Promise<Failure | undefined> {
  if (!pacer) return localSlot(maxRps);
  // A pause this isolate already knows of (an inline send answered 429) holds the queue too, even
  // before the pacer has heard of it.
  const known = pausedUntil() - Date.now();
  if (known > MAX_WAIT_MS) {
    return {
      ok: false,
      permanent: false,
      error: "The account's Ortto request budget is paused (a rate limit)",
      retryAfterSeconds: Math.ceil(known / 1000),
    };
  }
  await sleep(known);
  for (let late = 0; ; late++) {
    let slot: Awaited<ReturnType<UpstreamPacer["slot"]>>;
    try {
      slot = await pacer.slot(MAX_WAIT_MS, batch);
    } catch {
      return localSlot(maxRps);
    }
    if ("retryAfterMs" in slot) {
      return {
        ok: false,
        permanent: false,
        error: "The account's Ortto request budget is paused (a rate limit)",
        retryAfterSeconds: Math.ceil(slot.retryAfterMs / 1000),
      };
    }
    await sleep(slot.at - Date.now());
    // Woken too late to arrive within the slot's second (a busy isolate): take another, a few times.
    if (Date.now() <= slot.deadline || late >= MAX_LATE_WAKES) return undefined;
  }
}

/** forwardActivities, paced by the account's budget, sitting out Ortto's rate limits. */
export async function forwardPaced(
  env: RelayEnv,
  config: RelayConfig,
  apiKey: string,
  request: Omit<ActivitiesRequest, "activities">,
  activities: ActivityInput[],
): Promise<ForwardOutcome> {
  const pacer = pacerOf(env);
  const batch = lastBatch();
  const results: ForwardOutcome["results"] = [];
  let remaining = activities;
  for (let holds = 0; ; holds++) {
    const outcome = await forwardActivities(config, apiKey, request, remaining, () => takeSlot(pacer, config.maxRps, batch));
    results.push(...outcome.results);
    const failure = outcome.failure;
    if (failure?.status !== 429 || failure.permanent) return { ...outcome, results };
    const waitSeconds = failure.retryAfterSeconds ?? 10;
    // Every sender pauses: the pacer gives no slot before the end of the pause.
    await pacer
      ?.pause(Date.now() + waitSeconds * 1000)
      .then(pauseReported)
      .catch(() => undefined);
    if (holds + 1 >= MAX_HOLDS || waitSeconds * 1000 > MAX_HOLD_MS) return { ...outcome, results };
    remaining = outcome.remaining;
  }
}
