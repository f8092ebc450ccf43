import { createRelay } from "./core.ts";
import type { Relay } from "./relay.d.ts";

type Stub = Relay & { q?: ArrayLike<unknown>[]; l?: 1 };

/**
 * Starts the snippet from its script tag: options from the data-* attributes, the endpoint
 * from where the script came from, then the calls the loader line queued, in order.
 */
export function boot() {
  try {
    const stub = window.relay as Stub | undefined;
    // A second copy of the tag must not start a second client.
    if (!stub?.l) {
      const script = document.currentScript as HTMLScriptElement;
      const data = script.dataset;
      const relay: Stub = createRelay({
        ...data,
        endpoint: data.endpoint || new URL(".", script.src).href,
        debug: data.debug != null,
        hash: data.hash != null,
      });
      relay.l = 1;
      window.relay = relay;
      for (const args of stub?.q || []) (relay as (...args: unknown[]) => void).apply(0, args as unknown[]);
    }
  } catch {}
}
