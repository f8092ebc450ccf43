/**
 * Typings of the relay snippet: `window.relay` (the script tag) and `createRelay` (the ES module).
 * Hand-written and untyped by the catalogue (the snippet's own code uses these); the build writes
 * `snippet/dist/relay.d.ts` from this file with `IdentifyFields` and `track` typed by relay.config.ts
 * (scripts/relay-types.mjs, scripts/typings.ts), so keep their shapes.
 */

/** A phone number as Ortto takes it; a string given as `phone` becomes the second form. */
export type Phone = { c: string; n: string } | { phone: string; parse_with_country_code?: boolean };

/**
 * Person fields in Ortto's ids (`str::email`, `str::first`, `str:cm:company` …), or the
 * shorthands `email`, `first`, `last`, `ei` (external id) and `phone`. The email is trimmed.
 */
export interface IdentifyFields {
  email?: string;
  first?: string;
  last?: string;
  ei?: string;
  phone?: string | Phone;
  [fieldId: string]: unknown;
}

export interface IdentifyOptions {
  /** The signed-identity token from the site's backend, when the relay requires one. */
  token?: string;
}

/** The one function of the snippet. It never throws; bad calls are ignored (and warned about with `debug`). */
export interface Relay {
  /**
   * Remembers who the visitor is (across pages, until `reset`). Events are held until the identity
   * has an identifying field (`email`, `ei` or `phone`), then sent.
   */
  (command: "identify", fields: IdentifyFields, options?: IdentifyOptions): void;
  /** Records an activity (`act:cm:logged-in` or just `logged-in`) with attributes in Ortto's ids. */
  (command: "track", activityId: string, attributes?: Record<string, unknown>): void;
  /** Grants or refuses consent; a refusal forgets the identity and every unsent event. */
  (command: "consent", granted: boolean): void;
  /** Forgets the identity (call it on log-out); events already recorded are still delivered. */
  (command: "reset"): void;
}

export interface RelayOptions {
  /** Base URL of the relay; activities go to `{endpoint}/v1/activities/create`. */
  endpoint: string;
  /** `"required"`: nothing is sent or stored until `relay('consent', true)`. */
  consent?: string;
  /** `"ignore"`: track even when the browser sends Global Privacy Control. */
  gpc?: string;
  /** Warn on the console about ignored calls, refused batches and dropped events. */
  debug?: boolean;
  /** An activity id (`act:cm:viewed-page`) to record a page view with, on start and on every SPA navigation. */
  pageviews?: string;
  /** With `pageviews`: hash routes (`#/cart`) are page views too, and the page view's URL keeps its hash. */
  hash?: boolean;
  /** The window to work in (tests); defaults to the global one. */
  window?: Window;
}

/** Starts a relay client and returns its `relay` function. */
export declare function createRelay(options: RelayOptions): Relay;

declare global {
  /** Set by the loader line (with the queue `q` of calls made before the script loads), then by the script. */
  var relay: Relay & { q?: ArrayLike<unknown>[] };
  interface Navigator {
    /** Global Privacy Control (https://globalprivacycontrol.org): true when the visitor opts out of sale and sharing. */
    readonly globalPrivacyControl?: boolean;
  }
}
