#!/usr/bin/env node
/**
 * `npm run size`: the snippet's size budget. Prints raw, gzip (level 9, as `gzip -9`) and
 * brotli (max quality) sizes of snippet/dist/relay.js and of the loader line, and exits 1
 * when either is over budget, so CI fails (as Segment's and RudderStack's size-limit do).
 * Build first: `npm run build`.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

// The cap is 2,400 B; correctness may take the script to 2,600 B, each byte over 2,400 with its
// reason in snippet/README.md's size table. The budget sits at the script as it is, so that any
// growth is a decision: 30 B over the cap for the right person (identity read from the shared state
// at each call, the first page view after the loader's calls, held events expiring after HOLD_MS),
// 116 B for losing no event (every exit event at page hide, a hung request aborted after 15 s, a
// refused keepalive request sent again in halves, gone pages' queues adopted whole), and 40 B net for
// issue 20's O(1) calls, heartbeats, storage full or disabled, clock steps and path-only page views
// (after moving the clock to the relay), 23 B for hash routes on data-hash and 7 B for one page view
// per landing with it (a hash router's rewrite of / to /#/ is none), 5 B for the referrer cut
// to 2,000 at sending (a browser may not cap it), 35 B for page views with no timer while idle (the
// Navigation API's currententrychange, unless a site's own global navigation replaces it), 20 B for
// counting the activities a 2xx names as refused, less 41 B for the refused batch's split (the relay
// takes a batch in part), 7 B for the request's a and i, and 42 B of savings (the build's booleans and
// endpoint, page-view attributes as u, t, r for the relay to expand, three flags starting undefined,
// the shared state read through get, adoption in one loop, the keys' regular expression in place, a
// refused consent's queue forgotten through a filter, no pause as false, warn without a block):
// 2,597 B, 3 B under the ceiling.
const BUDGET = { script: 2597, loader: 100 };
const root = new URL("../snippet/", import.meta.url);

let script;
try {
  script = readFileSync(new URL("dist/relay.js", root));
} catch {
  console.error("snippet/dist/relay.js is missing: run `npm run build` first");
  process.exit(1);
}
const loader = Buffer.from(readFileSync(new URL("loader.txt", root), "utf8").trim());

const sizes = (bytes) => ({
  raw: bytes.length,
  gzip: gzipSync(bytes, { level: 9 }).length,
  brotli: brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY } }).length,
});

const s = sizes(script);
const l = sizes(loader);
const fmt = (n) => n.toLocaleString("en-US").padStart(6);
console.log("                      raw    gzip  brotli   budget");
console.log(`relay.js           ${fmt(s.raw)}  ${fmt(s.gzip)}  ${fmt(s.brotli)}   ${fmt(BUDGET.script)} gzip`);
console.log(`loader line        ${fmt(l.raw)}  ${fmt(l.gzip)}  ${fmt(l.brotli)}   ${fmt(BUDGET.loader)} raw`);
console.log(`integrity          sha384-${createHash("sha384").update(script).digest("base64")}`);

const over = [];
if (s.gzip > BUDGET.script) over.push(`relay.js is ${s.gzip} bytes gzipped, over its ${BUDGET.script}`);
if (l.raw > BUDGET.loader) over.push(`the loader line is ${l.raw} bytes, over its ${BUDGET.loader}`);
for (const message of over) console.error(`over budget: ${message}`);
if (over.length) process.exit(1);
console.log(`within budget: ${BUDGET.script - s.gzip} bytes to spare (Plausible 2,694, Umami 2,354 gzipped)`);
