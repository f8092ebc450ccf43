/** The ES module for bundler users: `import { createRelay } from "…/relay.mjs"`. */
export { createRelay } from "./core.ts";
export type { IdentifyFields, IdentifyOptions, Phone, Relay, RelayOptions } from "./relay.d.ts";
