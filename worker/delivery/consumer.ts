import { type ActivityInput, MAX_AGE_MS } from "../../shared/activities.ts";
import { pacerOf } from "../budget/binding.ts";
import { forwardPaced } from "../budget/paced.ts";
import { DEFAULT_SITE, relayConfig, siteKey } from "../config.ts";
import type { RelayEnv } from "../env.ts";
import type { Isolate } from "../isolate.ts";
import type { Failure } from "../upstream.ts";
import { ConfigError } from "../vars.ts";
import { countDelivery, deadLetterFailed, logDelivery, MAX_REASON } from "./dead-letters.ts";
import { type DeliveryMessage, PartialSendError, retryDelaySeconds, sendMessages } from "./messages.ts";

const MAX_ACTIVITIES_PER_REQUEST = 100;
/** How long a batch waits between looks while the vars are invalid (holdWhileInvalid). */
const CONFIG_RETRY_SECONDS = 600;

type Msg = Message<DeliveryMessage>;

/** A message's shape, with or without activities (a dead letter of something else has none). */
function isMessageShape(body: unknown): body is DeliveryMessage {
  return (
    typeof body === "object" && body !== null && (body as DeliveryMessage).v === 1 && Array.isArray((body as DeliveryMessage).activities)
  );
}

/** A message with activities to deliver: anything else would reach Ortto as an invalid request. */
function isDeliveryMessage(body: unknown): body is DeliveryMessage {
  return isMessageShape(body) && body.activities.length > 0;
}

/** What a message becomes in the dead-letter queue: itself, or (not a delivery message) its raw body, wrapped once. */
const asDeadLetter = (body: unknown): DeliveryMessage =>
  isMessageShape(body) ? body : ({ v: 1, request_id: "unknown", activities: [], raw: body } as DeliveryMessage);

/** The queue backoff's settings (RETRY_BASE_SECONDS, RETRY_MAX_SECONDS). */
const backoff = (env: RelayEnv) => {
  const config = relayConfig(env);
  return { base: config.retryBaseSeconds, max: config.retryMaxSeconds };
};

/**
 * After this many transient failures in a row a message may be what Ortto chokes on (or Ortto is
 * down): its pack is probed with one message first (`deliverProbing`), and split if it fails alone.
 */
const ALONE_AFTER_ATTEMPTS = 3;

const tired = (m: Msg) => m.attempts > ALONE_AFTER_ATTEMPTS;

/**
 * Packs messages with the same options into Ortto requests of at most 100 activities, never
 * splitting a message. A message held for a pause or a circuit, or retried after a 5xx or a
 * timeout, is packed as fully as a first try: a failure of Ortto's is no reason to send one
 * message a request. Apart travel replays (their count stays their own), and the parts of a
 * refused pack still being narrowed (each part one request). Messages that failed
 * ALONE_AFTER_ATTEMPTS times are packed among themselves, for `deliverProbing`.
 */
function pack(messages: Msg[]): Msg[][] {
  const byOptions = new Map<string, Msg[][]>();
  const alone: Msg[][] = [];
  for (const message of messages) {
    if (message.body.replays) {
      alone.push([message]);
      continue;
    }
    const b = message.body;
    const key = JSON.stringify([b.site ?? null, b.async ?? false, b.merge_by ?? null, b.narrow ?? null, tired(message)]);
    const packs = byOptions.get(key) ?? [];
    const last = packs.at(-1);
    const count = last?.reduce((n, m) => n + m.body.activities.length, 0) ?? 0;
    if (last && count + b.activities.length <= MAX_ACTIVITIES_PER_REQUEST) last.push(message);
    else packs.push([message]);
    byOptions.set(key, packs);
  }
  return [...[...byOptions.values()].flat(), ...alone];
}

/**
 * A pack of messages that failed ALONE_AFTER_ATTEMPTS times: Ortto is down, or one of them is
 * what it chokes on. One message, chosen at random, goes first, alone. If Ortto does not take it,
 * the rest waits as the probe does, at no further request: an outage costs one request a pack per
 * try, however long it lasts. If Ortto takes it, the rest goes as one request, split in halves
 * while a part fails (`split`), so a poison message is found in about 2·log₂(n) requests and the
 * others are delivered, never one request each.
 */
async function deliverProbing(env: RelayEnv, isolate: Isolate, messages: Msg[]): Promise<void> {
  const i = Math.floor(Math.random() * messages.length);
  const rest = messages.filter((_, j) => j !== i);
  const failure = await deliver(env, isolate, [messages[i] as Msg]);
  if (failure && !failure.permanent) {
    if (failure.holdUntil !== undefined) await hold(env, isolate, rest, failure, rest[0]?.body.narrow);
    else retry(env, isolate, rest, failure);
    return;
  }
  await split(env, isolate, rest);
}

/** How many parts of a split may fail transiently before the rest waits for the next try: one message Ortto chokes on costs about 2·log₂(n). */
const splitBudget = (n: number) => ({ failures: 2 * Math.ceil(Math.log2(n + 1)) + 2, last: undefined as Failure | undefined });

/**
 * Delivers a pack; a part that fails transiently (Ortto took the probe just now) is split in
 * halves, down to single messages, which are retried. Once the parts' failures exceed the budget
 * (Ortto failing again, or several messages it chokes on), what is left is retried at no further
 * request, to be probed again on its next try: a split never costs one request a message.
 */
async function split(env: RelayEnv, isolate: Isolate, messages: Msg[], failures = splitBudget(messages.length)): Promise<void> {
  if (!messages.length) return;
  if (failures.failures <= 0 && failures.last) return retry(env, isolate, messages, failures.last);
  const failure = await deliver(env, isolate, messages, false, messages.length > 1);
  if (!failure || failure.permanent || failure.holdUntil !== undefined) return;
  failures.failures--;
  failures.last = failure;
  if (messages.length === 1) return;
  const half = Math.ceil(messages.length / 2);
  for (const part of [messages.slice(0, half), messages.slice(half)]) await split(env, isolate, part, failures);
}

async function deadLetter(env: RelayEnv, isolate: Isolate, message: Msg, reason: string) {
  const body = asDeadLetter(message.body);
  await sendMessages(env.DEAD_LETTERS, [{ ...body, dead_reason: reason.slice(0, MAX_REASON) }]);
  message.ack();
  isolate.delivery.dead_lettered++;
  countDelivery(env, body.site, "dead_lettered", body.activities.length);
  logDelivery("dead_lettered", { request_id: body.request_id, activities: body.activities.length, reason, attempts: message.attempts });
}

/** A transient failure (5xx, timeout, outage): the messages are retried together, with one delay, so they come back packed. */
function retry(env: RelayEnv, isolate: Isolate, messages: Msg[], failure: Failure) {
  const { base, max } = backoff(env);
  const attempts = Math.max(...messages.map((m) => m.attempts));
  const delaySeconds = retryDelaySeconds(attempts, base, failure.permanent ? 0 : failure.retryAfterSeconds, max);
  for (const message of messages) {
    message.retry({ delaySeconds });
    isolate.delivery.retried++;
  }
  isolate.delivery.last_upstream_failure_at = new Date().toISOString();
  logDelivery("delivery_retry", {
    messages: messages.length,
    upstream_status: failure.status ?? null,
    error: failure.error,
    attempts,
    delay_s: delaySeconds,
  });
}

/**
 * A wait every sender keeps (Ortto's pause, the refusals window, a site's refused key), not a
 * failure of these messages: they go back on the queue as they are, delayed until it ends, so no
 * retry is spent and they come back to be packed in full requests. `narrow`: the part of a refused
 * pack being narrowed, kept together as one request when it comes back.
 */
async function hold(env: RelayEnv, isolate: Isolate, messages: Msg[], failure: Failure, narrow?: string) {
  const untilMs = failure.permanent ? Date.now() : (failure.holdUntil ?? Date.now());
  // At least until the wait ends (whole seconds, rounded up), at most the queue's 12 hours.
  const delaySeconds = Math.min(43_200, Math.max(1, Math.ceil((untilMs - Date.now()) / 1000)));
  try {
    await sendMessages(
      env.DELIVERY_QUEUE,
      messages.map((m) => ({ ...m.body, ...(narrow ? { narrow } : {}) })),
      delaySeconds,
    );
    for (const m of messages) m.ack();
  } catch {
    for (const m of messages) m.retry({ delaySeconds });
  }
  isolate.delivery.held += messages.length;
  logDelivery("delivery_held", {
    messages: messages.length,
    upstream_status: failure.status ?? null,
    reason: failure.error,
    delay_s: delaySeconds,
  });
}

const OK_DETAIL = new Set(["ok", "valid", "ingested", "queued", "success"]);

/**
 * Which activities a refused request's `details` name: Ortto's `details` one per activity, in
 * order, each with a status (`invalid`, `failed`, …, or `ok`). Undefined when they name none.
 */
function refusedByDetails(details: unknown, count: number): Set<number> | undefined {
  if (!Array.isArray(details) || details.length !== count) return undefined;
  const refused = new Set<number>();
  for (const [i, d] of details.entries()) {
    const status = (d as { status?: unknown } | null)?.status;
    if (typeof status !== "string") return undefined;
    if (!OK_DETAIL.has(status)) refused.add(i);
  }
  return refused.size ? refused : undefined;
}

/**
 * Ortto refused a pack (400): find what it refuses in few requests. Where its answer names the
 * activities, those go to the dead-letter queue and the rest is sent again at once; otherwise the
 * pack is split in halves, each sent as one request, until the refused messages stand alone and
 * are dead-lettered. Each request is behind the refusals window (paced.ts), so narrowing never
 * takes the relay near Ortto's ban; a part that has to wait keeps together (`narrow`).
 */
async function narrow(
  env: RelayEnv,
  isolate: Isolate,
  messages: Msg[],
  activities: ActivityInput[],
  failure: Extract<Failure, { permanent: true }>,
) {
  const reason = `Ortto answered ${failure.status}: ${failure.error}`;
  const refused = refusedByDetails(failure.details, activities.length);
  if (refused) {
    const rest: Msg[] = [];
    let offset = 0;
    for (const m of messages) {
      const first = offset;
      offset += m.body.activities.length;
      const bad = m.body.activities.filter((_, j) => refused.has(first + j));
      if (!bad.length) {
        rest.push(m);
        continue;
      }
      const good = m.body.activities.filter((_, j) => !refused.has(first + j));
      await sendMessages(env.DEAD_LETTERS, [{ ...m.body, activities: bad, dead_reason: reason.slice(0, MAX_REASON) }]);
      if (good.length) await sendMessages(env.DELIVERY_QUEUE, [{ ...m.body, activities: good }]);
      m.ack();
      isolate.delivery.dead_lettered++;
      countDelivery(env, m.body.site, "dead_lettered", bad.length);
      logDelivery("dead_lettered", { request_id: m.body.request_id, activities: bad.length, reason, attempts: m.attempts });
    }
    if (rest.length) await deliver(env, isolate, rest, true);
    return;
  }
  if (messages.length > 1) {
    const half = Math.ceil(messages.length / 2);
    for (const part of [messages.slice(0, half), messages.slice(half)]) await deliver(env, isolate, part, true);
    return;
  }
  await deadLetter(env, isolate, messages[0] as Msg, reason);
}

/**
 * Delivers one pack; answers Ortto's failure, if any, once the messages are taken care of (with
 * `keepTransient`, a transient failure is left to the caller: the messages are neither acked nor retried).
 */
async function deliver(
  env: RelayEnv,
  isolate: Isolate,
  messages: Msg[],
  narrowing = false,
  keepTransient = false,
): Promise<Failure | undefined> {
  const first = messages[0];
  if (!first) return;
  const { key: apiKey, secret } = siteKey(env, first.body.site);
  if (!apiKey) return void (await waitForKey(env, messages, secret));
  const activities = messages.flatMap((m) => m.body.activities);
  // Paced by the account's request budget (worker/budget/): one slot per request, 429s pause every sender.
  const outcome = await forwardPaced(
    isolate.budget,
    pacerOf(env),
    relayConfig(env),
    apiKey,
    { async: first.body.async, merge_by: first.body.merge_by },
    activities,
    first.body.site ?? DEFAULT_SITE,
  );
  if (!outcome.failure) {
    // Activities Ortto answered "failed" for are kept, with its answer, before the batch is acked.
    const failed = await deadLetterFailed(env, first.body, activities, outcome.results, isolate.delivery);
    for (const m of messages) m.ack();
    isolate.delivery.delivered_from_queue += activities.length - failed;
    isolate.delivery.last_queue_delivery_at = new Date().toISOString();
    countDelivery(env, first.body.site, "delivered", activities.length - failed);
    logDelivery("delivered", {
      messages: messages.length,
      activities: activities.length,
      upstream_status: outcome.status,
      ...(failed ? { failed_in_ortto: failed } : {}),
    });
    return;
  }
  const failure = outcome.failure;
  if (failure.permanent) await narrow(env, isolate, messages, activities, failure);
  else if (failure.holdUntil !== undefined)
    await hold(env, isolate, messages, failure, narrowing ? crypto.randomUUID() : first.body.narrow);
  else if (!keepTransient) retry(env, isolate, messages, failure);
  return failure;
}

/**
 * The queue consumer: forwards queued activities to Ortto, acknowledging what Ortto took,
 * retrying with backoff what it could not take yet, and dead-lettering what it refuses. A batch
 * from the dead-letter queue (attached only when an operator wants a replay) is put back on
 * the delivery queue.
 */
export async function consumeQueue(batch: MessageBatch<unknown>, env: RelayEnv, isolate: Isolate): Promise<void> {
  let deadLetterQueue: string;
  try {
    // DEAD_LETTER_QUEUE names the queue wrangler.toml dead-letters into, per environment.
    deadLetterQueue = relayConfig(env).deadLetterQueue;
  } catch (err) {
    // Invalid vars (logged by relayConfig): nothing is sent with a wrong default; the batch waits for the fix.
    if (!(err instanceof ConfigError)) throw err;
    return holdWhileInvalid(batch, env);
  }
  if (batch.queue === deadLetterQueue) return replayDeadLetters(batch, env, isolate);
  const valid: Msg[] = [];
  for (const m of batch.messages) {
    if (isDeliveryMessage(m.body)) valid.push(m as Msg);
    else await deadLetter(env, isolate, m as Msg, "not a delivery message");
  }
  isolate.budget.noteBatch(batch.messages);
  for (const group of pack(await setAsideExpired(env, isolate, valid))) {
    if (group.length > 1 && group.every(tired)) await deliverProbing(env, isolate, group);
    else await deliver(env, isolate, group);
  }
}

/**
 * While the vars are invalid, each message goes back on the queue it came from as a new message,
 * looked at again in CONFIG_RETRY_SECONDS, for as long as it takes an operator to fix them. A retry
 * would spend max_retries: the delivery queue's 30 would dead-letter the batch after five hours, a
 * replay consumer's 3 (its default) would delete dead letters after half an hour. The dead-letter
 * queue is told apart by the DEAD_LETTER_QUEUE var as set; where that var is the one missing, a
 * dead letter goes to the delivery queue, which is what the replay was for, and waits there too.
 */
async function holdWhileInvalid(batch: MessageBatch<unknown>, env: RelayEnv) {
  const named = typeof env.DEAD_LETTER_QUEUE === "string" ? env.DEAD_LETTER_QUEUE.trim() : "";
  const queue = named !== "" && batch.queue === named ? env.DEAD_LETTERS : env.DELIVERY_QUEUE;
  let sent = batch.messages.length;
  try {
    await sendMessages(
      queue,
      batch.messages.map((m) => m.body as DeliveryMessage),
      CONFIG_RETRY_SECONDS,
    );
  } catch (err) {
    sent = err instanceof PartialSendError ? err.sent : 0;
  }
  for (const [i, m] of batch.messages.entries()) i < sent ? m.ack() : m.retry({ delaySeconds: CONFIG_RETRY_SECONDS });
  logDelivery("delivery_held", { queue: batch.queue, messages: batch.messages.length, reason: "config_invalid" });
}

/**
 * A deploy without the site's key: each message goes back on the delivery queue as a new
 * message, to be looked at again after the retry backoff (capped at RETRY_MAX_SECONDS). A
 * retry would count against max_retries and the queue's retention, and dead-letter the
 * message after ~30 tries; a new message waits for as long as the key is missing.
 */
async function waitForKey(env: RelayEnv, messages: Msg[], secret: string) {
  const { base, max } = backoff(env);
  for (const m of messages) {
    const waits = (m.body.key_waits ?? 0) + 1;
    try {
      await sendMessages(env.DELIVERY_QUEUE, [{ ...m.body, key_waits: waits }], retryDelaySeconds(waits, base, 0, max));
      m.ack();
    } catch {
      m.retry({ delaySeconds: 60 });
    }
  }
  logDelivery("delivery_retry", { messages: messages.length, error: `${secret} is not set` });
}

/** Ortto refuses a created more than 90 days ago; a minute's margin covers the way there. */
const EXPIRY_MARGIN_MS = 60_000;
const EXPIRED = "Created date is more than 90 days ago (checked at delivery: the activity expired while it waited)";

/**
 * An activity accepted near the 90-day limit can pass it while it waits (an outage, a missing
 * key). Sent, it would make Ortto refuse its whole request (a bad request that counts toward
 * Ortto's IP ban) and dead-letter its valid siblings with it. So each message's expired
 * activities go to the dead-letter queue with the reason, the rest of the message goes back
 * on the delivery queue as a new message, and the message is acked. Returns the messages
 * with nothing expired, to deliver now.
 */
async function setAsideExpired(env: RelayEnv, isolate: Isolate, messages: Msg[]): Promise<Msg[]> {
  const oldest = Date.now() - MAX_AGE_MS + EXPIRY_MARGIN_MS;
  const isExpired = (a: ActivityInput) => a.created !== undefined && Date.parse(a.created) < oldest;
  const live: Msg[] = [];
  for (const m of messages) {
    const expired = m.body.activities.filter(isExpired);
    if (!expired.length) {
      live.push(m);
      continue;
    }
    const rest = m.body.activities.filter((a) => !isExpired(a));
    await sendMessages(env.DEAD_LETTERS, [{ ...m.body, activities: expired, dead_reason: EXPIRED }]);
    if (rest.length) await sendMessages(env.DELIVERY_QUEUE, [{ ...m.body, activities: rest }]);
    m.ack();
    isolate.delivery.dead_lettered++;
    countDelivery(env, m.body.site, "dead_lettered", expired.length);
    logDelivery("dead_lettered", { request_id: m.body.request_id, activities: expired.length, reason: EXPIRED, attempts: m.attempts });
  }
  return live;
}

/** How often one message is replayed from the dead-letter queue before it is kept there for a person to look at. */
export const MAX_REPLAYS = 3;

/**
 * The dead-letter queue's consumer, attached only while an operator replays: puts each message
 * back on the delivery queue. A message that has already come back MAX_REPLAYS times (Ortto
 * keeps refusing it) is not replayed again but kept in the dead-letter queue, so replaying
 * never loops and never drops it.
 */
async function replayDeadLetters(batch: MessageBatch<unknown>, env: RelayEnv, isolate: Isolate): Promise<void> {
  const replay: { message: Message; body: DeliveryMessage }[] = [];
  const keep: { message: Message; body: DeliveryMessage }[] = [];
  for (const m of batch.messages) {
    const body = asDeadLetter(m.body);
    // Only a message with activities is replayed: anything else would reach Ortto as an invalid request.
    if (!isDeliveryMessage(m.body) || (body.replays ?? 0) >= MAX_REPLAYS) keep.push({ message: m, body });
    else {
      const { dead_reason: _reason, ...rest } = body;
      replay.push({ message: m, body: { ...rest, replays: (body.replays ?? 0) + 1 } });
    }
  }
  // Sent before acked: a failure here leaves the dead letters where they were.
  await sendMessages(
    env.DELIVERY_QUEUE,
    replay.map((r) => r.body),
  );
  // Kept messages go back to the dead-letter queue, looked at again in 12 hours while the replay
  // consumer stays attached; retrying them instead would delete them after the consumer's retries.
  await sendMessages(
    env.DEAD_LETTERS,
    keep.map((k) => k.body),
    43_200,
  );
  for (const { message } of [...replay, ...keep]) message.ack();
  isolate.delivery.replayed += replay.length;
  for (const { body } of keep)
    logDelivery("dead_letter_kept", { request_id: body.request_id, reason: body.dead_reason ?? "not a delivery message" });
  logDelivery("dead_letters_replayed", { messages: replay.length });
}
