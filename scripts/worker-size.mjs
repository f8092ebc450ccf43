#!/usr/bin/env node
/**
 * The worker bundle's size budget: bundles exactly as `wrangler deploy` does (`--dry-run
 * --outdir`, minified per wrangler.toml), prints raw and gzip sizes, and exits 1 over budget.
 * A smaller bundle is a faster cold start; the validator is the bulk of it, which is why the
 * schema uses zod/mini.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

// The guard sits just above the bundle as it is, so that any growth is a decision. What is in
// it beyond Hono, zod and the relay's path: the User-Agent parser (bowser, 8.8 kB gzip; the smallest
// maintained one that names browser, OS and device type), the tracking plan's conversions and
// checks (~4 kB), acting on Ortto's answers (the 4xx window, the key circuits, narrowing refused
// packs, bounded nesting; ~2.1 kB) and the deployment's vars check, dry runs and path prefixes
// (~1.5 kB), the isolate's memory handed as one object to the handler and the queue consumer
// rather than kept in modules (64 B), and the response path's speed (issue 24, ~210 B: a
// counter's members looked up in a set once it has 8, dates checked without building strings,
// SHA-256 hex by table), which made a batch of returning people's events ~30% faster in workerd
// (docs/performance.md), the ledger's members packed in a row per counter (~380 B: the packed
// rows, reading them member by member once one has left the window, and moving a deployed
// ledger's rows of one member into them, once), ~1.16× for returning people, the ledger's keys
// and members hashed by SHA-256 in JavaScript rather than Web Crypto's promises (~570 B: the
// compression function and its constants, computed at start-up rather than written out) and a
// ledger shard keeping its counters' rows and members in memory, writing a call's rows 16 to a
// statement (~310 B): of a batch of returning people's CPU in workerd, the hashing went from ~15%
// to ~5% and the shard's `sync` from ~18% to ~15%, ~14% less a request (docs/performance.md), the
// ledger's members as 8 bytes, read by their first 8 from rows written with 16, and a counter's
// key hashed once (~30 B; with reports of seven every 100 ms, the ledger's share of a returning
// batch 57% less), a batch taken in part (~1.5 kB: each activity judged on its
// own, each refused one named by its index as the sender wrote it, the daily limit admitting what each
// person has room for, the request's keys as `a` and `i`), the pacer's and the ledger's waits as
// deployment settings (~100 B), and the snippet's page-view
// shorthands (`u`, `t`, `r`) expanded and reserved in the catalogue (~60 B), the fast path's
// single walk of an activity (issue 24, ~500 B: each kind's check answering its value's size bound, so
// the activity's size is summed in the same pass and measured exactly only near 16 kB; `created`'s
// time counted from its digits, ~200 B of it, where Date.parse costs ~0.2 µs an activity; a plain
// URL taken by its pattern before the URL parser), which halved the predicate's time in Node, and
// a batch of people never seen admitted as first sightings in one pass, each event's contact keys
// built without an object per identifier (issue 24, ~200 B with a plain success's data point
// written at once), ~25% less of the limits' CPU for new people in workerd; and ~145 B for the
// members of a ledger report that failed or timed out kept apart and sent again (`retry` in
// limits/counts.ts), so that one isolate counts exactly whatever was delivered meanwhile. The
// first parse of a user agent costs ~5 ms once per isolate, each new one ~60 µs.
const BUDGET_GZIP = 67 * 1024 + 1152;
const out = mkdtempSync(join(tmpdir(), "relay-bundle-"));
try {
  execFileSync(join("node_modules", ".bin", "wrangler"), ["deploy", "--dry-run", "--outdir", out], {
    stdio: "pipe",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  const bundle = readFileSync(join(out, "index.js"));
  const gzip = gzipSync(bundle, { level: 9 }).length;
  const ok = gzip <= BUDGET_GZIP;
  console.log(
    `worker bundle   ${bundle.length.toLocaleString("en")} B raw   ${gzip.toLocaleString("en")} B gzip   budget ${BUDGET_GZIP.toLocaleString("en")} B gzip   ${ok ? "ok" : "OVER BUDGET"}`,
  );
  if (!ok) process.exit(1);
} finally {
  rmSync(out, { recursive: true, force: true });
}
