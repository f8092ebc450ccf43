/**
 * Delivery signals that cost nothing to keep: counters in one isolate's memory (worker/isolate.ts),
 * written by the handler and the queue consumer. They reset when the isolate is recycled and each
 * Cloudflare location has its own isolates, so they are a hint of recent trouble (for /healthz),
 * not an account of the backlog; the Queues dashboard has the real depth.
 */
export class DeliveryStats {
  queued = 0;
  delivered_from_queue = 0;
  retried = 0;
  /** Messages put back on the queue to wait out a pause, the refusals window or a refused key (no retry spent). */
  held = 0;
  dead_lettered = 0;
  replayed = 0;
  last_upstream_failure_at: string | null = null;
  last_queue_delivery_at: string | null = null;
}
