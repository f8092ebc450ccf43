#!/usr/bin/env node
/**
 * Writes test/durations.json, the seconds each test file took, which vitest's LongestFirst sequencer
 * (test/fixtures/longest-first.ts) uses to start the longest files first on a fresh clone. Run the
 * suite on a quiet machine with vitest's JSON reporter first:
 *   npx vitest run --reporter=default --reporter=json --outputFile.json=.tmp/vitest.json
 *   node scripts/test-durations.mjs [.tmp/vitest.json]
 * Files under 3 s are left out (they count as 2 s).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { relative } from "node:path";

const report = JSON.parse(readFileSync(process.argv[2] ?? ".tmp/vitest.json", "utf8"));
const seconds = report.testResults
  .map((file) => [relative(process.cwd(), file.name), Math.round((file.endTime - file.startTime) / 1000)])
  .filter(([, s]) => s >= 3)
  .sort((a, b) => b[1] - a[1]);
writeFileSync("test/durations.json", `${JSON.stringify(Object.fromEntries(seconds), null, 2)}\n`);
console.log(`test/durations.json: ${seconds.length} files of 3 s or more`);
