import type { ActivitiesRequest, ActivityInput, ActivityResult } from "../../shared/activities.ts";
import { DEFAULT_SITE } from "../config.ts";

/**
 * One queue message: validated, keyed activities that share request options. Every activity
 * already carries `key` + `created`, so however often a message is re-sent, Ortto merges it.
 */
export interface DeliveryMessage {
  v: 1;
  request_id: string;
  /** The site whose key delivers it (catalogue `sites`); absent for the default site. */
  site?: string;
  async?: boolean;
  merge_by?: string[];
  activities: ActivityInput[];
  /** Set when the message went to the dead-letter queue: why. */
  dead_reason?: string;
  /** How many times an operator's replay put it back on the delivery queue. */
  replays?: number;
  /** How many times it was put back on the queue to wait for its site's key (never dead-lettered for that). */
  key_waits?: number;
  /** Set on the part of a refused pack being narrowed down (consumer.ts `narrow`): packed only with its own part. */
  narrow?: string;
}

/** A sendMessages that failed part-way: the first `sent` messages are on the queue, the rest are not. */
export class PartialSendError extends Error {
  constructor(
    readonly sent: number,
    cause: unknown,
  ) {
    super(`The queue took ${sent} messages, then failed`, { cause });
  }
}

/** Queues take 128 KB per message and 256 KB or 100 messages per sendBatch; stay under both with room for framing. */
export const MAX_MESSAGE_BYTES = 120_000;
const MAX_SEND_BATCH_BYTES = 250_000;
const MAX_SEND_BATCH_MESSAGES = 100;

const size = (value: unknown) => new TextEncoder().encode(JSON.stringify(value)).length;

/** Splits activities into messages under the 128 KB message limit (an activity is ≤ 16 kB, so each message holds several). */
export function toMessages(
  requestId: string,
  site: string,
  options: Omit<ActivitiesRequest, "activities">,
  activities: ActivityInput[],
): DeliveryMessage[] {
  const messages: DeliveryMessage[] = [];
  const base = {
    v: 1 as const,
    request_id: requestId,
    ...(site !== DEFAULT_SITE ? { site } : {}),
    ...(options.async ? { async: true } : {}),
    ...(options.merge_by ? { merge_by: options.merge_by } : {}),
  };
  let current: ActivityInput[] = [];
  let bytes = size(base) + 20;
  for (const activity of activities) {
    const s = size(activity) + 1;
    if (current.length && bytes + s > MAX_MESSAGE_BYTES) {
      messages.push({ ...base, activities: current });
      current = [];
      bytes = size(base) + 20;
    }
    current.push(activity);
    bytes += s;
  }
  if (current.length) messages.push({ ...base, activities: current });
  return messages;
}

/** Sends messages in as few sendBatch calls as the limits allow. JSON content so the dashboard shows them readably. */
export async function sendMessages(queue: Queue<DeliveryMessage>, messages: DeliveryMessage[], delaySeconds?: number): Promise<void> {
  let batch: MessageSendRequest<DeliveryMessage>[] = [];
  let bytes = 0;
  let sent = 0;
  const flush = async () => {
    try {
      await queue.sendBatch(batch, delaySeconds ? { delaySeconds } : undefined);
    } catch (err) {
      throw new PartialSendError(sent, err);
    }
    sent += batch.length;
    batch = [];
    bytes = 0;
  };
  for (const body of messages) {
    const s = size(body);
    if (batch.length && (batch.length === MAX_SEND_BATCH_MESSAGES || bytes + s > MAX_SEND_BATCH_BYTES)) await flush();
    batch.push({ body, contentType: "json" });
    bytes += s;
  }
  if (batch.length) await flush();
}

/** What the browser is told about activities that wait in the queue: Ortto's own async answer. */
export const QUEUED: ActivityResult = { status: "queued", person_status: "queued" };

/**
 * Exponential backoff with jitter for a message on its `attempts`-th try: base·2ⁿ⁻¹ seconds,
 * capped (an hour by default), drawn from the upper half so retries spread out, and never sooner than
 * Ortto's own `try-in-seconds`. Queues accept at most 12 hours of delay.
 */
export function retryDelaySeconds(
  attempts: number,
  baseSeconds: number,
  retryAfterSeconds = 0,
  maxSeconds = 3600,
  random = Math.random,
): number {
  const ceiling = Math.min(maxSeconds, baseSeconds * 2 ** Math.max(0, attempts - 1));
  const jittered = ceiling / 2 + random() * (ceiling / 2);
  return Math.min(43_200, Math.ceil(Math.max(retryAfterSeconds, jittered)));
}
