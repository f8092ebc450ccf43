import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { buildSync } from "esbuild";
import { configDefaults, defineConfig } from "vitest/config";
import { LongestFirst } from "./test/fixtures/longest-first.ts";

// The relay's worker tests reach the local Ortto emulator as their upstream: it runs as a
// second worker in the same workerd, and every outbound fetch of the relay is routed to it
// through test/fixtures/test-network.js.
const emulatorScript = ".tmp/emulator.js";
buildSync({ entryPoints: ["emulator/index.ts"], bundle: true, format: "esm", outfile: emulatorScript, logLevel: "warning" });

/** The packages the relay, its tests and their setup import (worker/, shared/, scripts/plan/, test/). */
const RELAY_DEPENDENCIES = [
  "zod/mini",
  "hono",
  "hono/factory",
  "hono/cors",
  "hono/body-limit",
  "hono/request-id",
  "hono/http-exception",
  "hono/utils/url",
  "hono/utils/http-status",
  "bowser",
  "isbot",
  "fast-check",
];

/**
 * The relay in workerd (wrangler.toml's bindings) with the emulator as its upstream. Each test file
 * runs in a workerd of its own (vitest isolates files, and the pool starts a Miniflare per file), with
 * its own emulator, queues and Durable Objects, so files run side by side.
 */
function relayProject(
  test: { name: string; include: string[]; exclude?: string[] },
  bindings: Record<string, string>,
  miniflare: Record<string, unknown> = {},
) {
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            ORTTO_API_KEY: "test-key-7f3a",
            ORTTO_API_BASE: "http://ortto.test",
            // Short waits, so that retries and outages play out in seconds.
            RETRY_BASE_SECONDS: "1",
            RETRY_MAX_SECONDS: "1",
            // Ortto given 30 s before a request goes to the queue: on a loaded machine the emulator can
            // take longer than the default 5 s, and a test's answer would turn 202. Tests of the
            // timeout set their own.
            UPSTREAM_TIMEOUT_MS: "30000",
            // The same for the pacer's permit, which a fresh isolate's first inline send waits for
            // (500 ms by default): a loaded machine can start the Durable Object slower than that.
            PACER_TIMEOUT_MS: "30000",
            // And for the limits' ledger (500 ms by default), past which a request decides on what its
            // isolate knows. Tests of these timeouts set their own.
            LEDGER_TIMEOUT_MS: "30000",
            // Every request's log line, for the tests that read them (the default logs all but plain successes).
            LOG_REQUESTS: "all",
            ...bindings,
          },
          queueConsumers: {
            "ortto-relay-delivery": { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 14, deadLetterQueue: "ortto-relay-dead-letters" },
          },
          ...miniflare,
          outboundService: "test-network",
          workers: [
            { name: "ortto-emulator", modules: true, scriptPath: emulatorScript, compatibilityDate: "2026-04-20" },
            {
              name: "test-network",
              modules: true,
              scriptPath: "test/fixtures/test-network.js",
              compatibilityDate: "2026-04-20",
              serviceBindings: { EMULATOR: "ortto-emulator" },
              queueConsumers: { "ortto-relay-dead-letters": { maxBatchTimeout: 1 } },
            },
          ],
        },
      }),
    ],
    // A test's own timeout covers its waits; 30 s by default, so that one doing a few hundred
    // requests is not failed by a loaded machine. The emulator starts as an empty account: each
    // file's setup pushes the catalogue to it.
    test: {
      testTimeout: 30_000,
      setupFiles: ["test/fixtures/account-setup.ts"],
      // The relay's dependencies bundled once per run (Vite's optimizer), so that each file's workerd
      // loads each as one module rather than hono's and zod's hundreds through the module runner:
      // about half of a file's start (~1.7 s of ~3.5 s on this machine).
      deps: { optimizer: { ssr: { enabled: true, include: RELAY_DEPENDENCIES } } },
      ...test,
    },
  };
}

/** The worker project's bindings, which its dead-letter file's project shares. */
const WORKER_BINDINGS = {
  ALLOWED_ORIGINS: "https://shop.example,https://*.brand.example",
  // These tests post as fast as workerd answers; the account's budget is the budget project's subject.
  ORTTO_MAX_RPS: "1000000",
};
const DEAD_LETTER_FILE = "test/worker/dead-letter-after-retries.test.ts";

export default defineConfig({
  test: {
    // The relay's own JSON log lines (one per request) are kept out of the output, so a failing run
    // shows the failure; tests that assert on them spy on console.log.
    onConsoleLog: (line) => !/^\s*\{"(request_id|event)"/.test(line),
    // Most files wait (on queue retries, Ortto's windows, a browser) rather than compute: three at a
    // time on a 2-core machine (vitest's default there is one). Every project's files are
    // independent: a workerd of their own, or (e2e) visitors, pages and proxies of their own.
    maxWorkers: 3,
    // The longest files first, across projects, so that the workers finish together.
    sequence: { sequencer: LongestFirst },
    projects: [
      {
        test: { name: "unit", include: ["test/unit/**/*.test.ts"], environment: "node" },
      },
      relayProject(
        { name: "worker", include: ["test/worker/**/*.test.ts"], exclude: [...configDefaults.exclude, DEAD_LETTER_FILE] },
        WORKER_BINDINGS,
      ),
      // The dead letter after a message's retries: the relay as above, with a delivery queue that
      // retries 4 times (each retry waits a second at least; 14 times took the test 30 s). The other
      // files keep 14, which their outages on a loaded machine need before a message is dead-lettered.
      relayProject({ name: "worker-retries", include: [DEAD_LETTER_FILE] }, WORKER_BINDINGS, {
        queueConsumers: {
          "ortto-relay-delivery": { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 4, deadLetterQueue: "ortto-relay-dead-letters" },
        },
      }),
      // The account's request budget under load (test/budget): the relay as above, on Professional's
      // 10 requests a second, with its own emulator and queues; in memory, as the load test creates a
      // thousand contacts' counters and must not wait on disk.
      relayProject(
        { name: "budget", include: ["test/budget/**/*.test.ts"] },
        { ALLOWED_ORIGINS: "https://shop.example", ORTTO_MAX_RPS: "10" },
        { unsafeEphemeralDurableObjects: true },
      ),
      {
        plugins: [cloudflareTest({ wrangler: { configPath: "./emulator/wrangler.toml" } })],
        test: {
          name: "emulator",
          include: ["test/emulator/**/*.test.ts"],
          setupFiles: ["test/emulator/setup.ts"],
          // As the relay's projects: its dependencies bundled once per run.
          deps: { optimizer: { ssr: { enabled: true, include: ["zod/mini", "hono"] } } },
        },
      },
      {
        test: { name: "snippet", include: ["test/snippet/**/*.test.ts"], environment: "happy-dom" },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          environment: "node",
          globalSetup: ["test/e2e/global-setup.ts"],
          setupFiles: ["test/e2e/stack-ready.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
