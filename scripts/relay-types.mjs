#!/usr/bin/env node
/**
 * `npm run build`'s last step: writes snippet/dist/relay.d.ts (and .d.mts, the name TypeScript looks
 * for beside relay.mjs) from relay.config.ts, so that `relay('track', …)` and `createRelay()` accept
 * only the catalogue's activities, attributes and person fields (scripts/typings.ts).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadTs, root } from "./load-ts.mjs";

const [{ relayTypings, checkTimeZones }, { default: catalogue }] = await Promise.all([
  loadTs("scripts/typings.ts"),
  loadTs("relay.config.ts"),
]);
const zones = checkTimeZones(catalogue);
if (zones.length) throw new Error(`Invalid relay catalogue:\n  ${zones.join("\n  ")}`);
const source = relayTypings(catalogue, readFileSync(`${root}snippet/src/relay.d.ts`, "utf8"));
mkdirSync(`${root}snippet/dist`, { recursive: true });
for (const name of ["relay.d.ts", "relay.d.mts"]) writeFileSync(`${root}snippet/dist/${name}`, source);
console.log(`snippet/dist/relay.d.ts: typed from relay.config.ts (${Object.keys(catalogue.activities).length} activities)`);
