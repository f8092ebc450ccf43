/**
 * The queue consumer's way to Ortto: every request waits for a slot in the account's budget
 * (the pacer's ledger), and a 429 pauses every sender for Ortto's try-in-seconds, however long:
 * the messages are held until the pause ends (the consumer puts them back on the queue with that
 * delay, spending no retry), and come back to be packed in full requests. While Ortto has answered
 * 4xx in the last 15 s, each request first asks the pacer for a permit (at most MAX_REFUSALS in
 * flight or answered 4xx per window); a site whose key Ortto refuses sends only the circuit's probe.
 */
import type { ActivitiesRequest, ActivityInput } from "../../shared/activities.ts";
import type { RelayConfig } from "../config.ts";
import { type Failure, type ForwardOutcome, forwardActivities, type UpstreamResult } from "../upstream.ts";
import type { BatchNote, PacerPort } from "./binding.ts";
import { type IsolateBudget, KEY_REFUSED_REASON } from "./gate.ts";

/** The longest a consumer waits for its slot; beyond it the messages are held until then. */
const MAX_WAIT_MS = 30_000;
/** A pause this short is slept through; a longer one holds the messages (back on the queue) until it ends. */
const MAX_SLEEP_MS = 1_000;
/**
 * How often a consumer woken too late for its slot (a busy isolate's timers fire late) takes
 * another before sending anyway: a late request lands in the next second, at most one over.
 */
const MAX_LATE_WAKES = 2;

const sleep = (ms: number) => (ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve());

/** A wait every sender keeps, not a failure of the messages: they are held until `until`. */
const held = (now: number, until: number, error: string, extra: { keyRefused?: boolean } = {}): Failure => ({
  ok: false,
  permanent: false,
  error,
  retryAfterSeconds: Math.max(1, Math.ceil((until - now) / 1000)),
  holdUntil: until,
  ...extra,
});
const PAUSED = "The account's Ortto request budget is paused (a rate limit)";

/** Without a pacer (its binding absent or unreachable): this isolate alone keeps to the budget's spacing. */
async function localSlot(budget: IsolateBudget, maxRps: number): Promise<undefined> {
  await sleep(budget.localSlot(maxRps) - budget.now());
  return undefined;
}

/** Waits for this request's slot; answers a hold when the budget is paused for longer than a moment. */
async function takeSlot(
  budget: IsolateBudget,
  pacer: PacerPort | undefined,
  maxRps: number,
  batch: BatchNote | undefined,
): Promise<Failure | undefined> {
  // A pause this isolate already knows of (an inline send answered 429) holds the queue too, even
  // before the pacer has heard of it.
  const known = budget.pausedUntil() - budget.now();
  if (known > MAX_SLEEP_MS) return held(budget.now(), budget.pausedUntil(), PAUSED);
  await sleep(known);
  if (!pacer) return localSlot(budget, maxRps);
  for (let late = 0; ; late++) {
    let slot: Awaited<ReturnType<PacerPort["slot"]>>;
    try {
      slot = await pacer.slot(MAX_WAIT_MS, batch);
    } catch {
      return localSlot(budget, maxRps);
    }
    // What other senders learnt (a 4xx window, a refused key) is heeded before this request, below.
    budget.applyAccountView(slot);
    if ("retryAfterMs" in slot) return held(budget.now(), budget.now() + slot.retryAfterMs, PAUSED);
    await sleep(slot.at - budget.now());
    // Woken too late to arrive within the slot's second (a busy isolate): take another, a few times.
    if (budget.now() <= slot.deadline || late >= MAX_LATE_WAKES) return undefined;
  }
}

const isRefusal = (result: UpstreamResult) =>
  !result.ok && result.status !== undefined && result.status >= 400 && result.status < 500 && result.status !== 429;

/** forwardActivities for one site's messages, paced by the account's budget, behind the refusals window and the site's circuit. */
export async function forwardPaced(
  budget: IsolateBudget,
  pacer: PacerPort | undefined,
  config: RelayConfig,
  apiKey: string,
  request: Omit<ActivitiesRequest, "activities">,
  activities: ActivityInput[],
  site: string,
): Promise<ForwardOutcome> {
  const batch = budget.lastBatch();
  // A permit or a probe lasts as long as a request can.
  const ttlMs = config.timeoutMs + 1000;
  let permit: string | undefined;
  /** A permit of this isolate's own window, when the pacer could not be asked. */
  let localPermit: string | undefined;

  /** A site whose circuit is open sends only the circuit's probe. */
  const probeCircuit = async (): Promise<Failure | undefined> => {
    const probe = await pacer?.probe(site, ttlMs).catch(() => undefined);
    if (probe && "retryAtMs" in probe) return held(budget.now(), probe.retryAtMs, KEY_REFUSED_REASON, { keyRefused: true });
    if (probe && "closed" in probe) budget.noteKeyWorks(site);
    // No pacer to ask: this isolate's own backoff decides.
    else if (!probe && budget.now() < budget.circuitProbeAt(site))
      return held(budget.now(), budget.circuitProbeAt(site), KEY_REFUSED_REASON, { keyRefused: true });
    return undefined;
  };

  const before = async (): Promise<Failure | undefined> => {
    // A circuit this isolate knows of holds the pack before it takes a slot of the budget.
    const known = budget.circuitOpen(site);
    const circuitFailure = known ? await probeCircuit() : undefined;
    if (circuitFailure) return circuitFailure;
    // The slot's answer says which windows and circuits are open, even to an isolate that never synced.
    const slotFailure = await takeSlot(budget, pacer, config.maxRps, batch);
    if (slotFailure) return slotFailure;
    const learnt = !known && budget.circuitOpen(site) ? await probeCircuit() : undefined;
    if (learnt) return learnt;
    if (budget.refusalWindowOpen()) {
      const fromPacer = await pacer?.admit(ttlMs).catch(() => undefined);
      // No pacer to ask (no binding, unreachable): this isolate's own window caps its requests.
      const answer = fromPacer ?? budget.admitLocally(ttlMs);
      if ("retryAtMs" in answer)
        return held(budget.now(), answer.retryAtMs, "Ortto answered 4xx to the relay's requests recently: waiting out its window");
      if (fromPacer) permit = answer.permit;
      else localPermit = answer.permit;
    }
    return undefined;
  };

  const after = async (result: UpstreamResult) => {
    budget.noteUpstream(result);
    if (localPermit) budget.settleLocally(localPermit);
    localPermit = undefined;
    const given = permit;
    permit = undefined;
    if (isRefusal(result)) {
      const status = result.status as number;
      if (!result.ok && !result.permanent && result.keyRefused) budget.noteKeyRefused(site, status);
      // Refused for its activities (a 400), not its key: the key works.
      else budget.noteKeyWorks(site);
      const answer = await pacer?.refused({ status, site, ...(given ? { permit: given } : {}) }).catch(() => undefined);
      if (answer) {
        budget.applyRefusal(answer);
        if (answer.nextProbeAt) budget.noteKeyRefused(site, status, answer.nextProbeAt);
      }
    } else if (given || (result.ok && budget.circuitOpen(site))) {
      if (result.ok) budget.noteKeyWorks(site);
      await pacer?.succeeded({ ...(result.ok ? { site } : {}), ...(given ? { permit: given } : {}) }).catch(() => undefined);
    }
  };

  const outcome = await forwardActivities(config, apiKey, request, activities, before, after);
  const failure = outcome.failure;
  if (!failure || failure.permanent || failure.holdUntil !== undefined) return outcome;
  if (failure.keyRefused) return { ...outcome, failure: { ...failure, holdUntil: budget.circuitProbeAt(site) } };
  if (failure.status !== 429) return outcome;
  // Every sender pauses, however long Ortto asked: the pacer gives no slot before the end of the pause.
  const until = budget.now() + (failure.retryAfterSeconds ?? 10) * 1000;
  const paused = await (
    pacer?.pause(until).then((p) => {
      budget.pauseReported();
      return p;
    }) ?? Promise.resolve(until)
  ).catch(() => until);
  return { ...outcome, failure: { ...failure, holdUntil: Math.max(until, paused) } };
}
