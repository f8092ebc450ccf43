// The shape of snippet/dist/relay-asset.ts, which `npm run build` writes (snippet/rollup.config.mjs),
// so that `tsc -p worker` passes on a fresh clone before any build: worker/tsconfig.json's rootDirs
// lays snippet/types under snippet/dist, and the built file, once there, is the one checked.
/** The minified IIFE the script tag loads. */
export declare const RELAY_JS: string;
/** relay.js, brotli at maximum quality, base64. */
export declare const RELAY_JS_BR: string;
/** A strong ETag of relay.js (SHA-256). */
export declare const RELAY_JS_ETAG: string;
/** The Subresource Integrity value of relay.js. */
export declare const RELAY_JS_INTEGRITY: string;
