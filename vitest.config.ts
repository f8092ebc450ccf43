import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { buildSync } from "esbuild";
import { defineConfig } from "vitest/config";

// The relay's worker tests reach the local Ortto emulator as their upstream: it runs as a
// second worker in the same workerd, and every outbound fetch of the relay is routed to it.
const emulatorScript = ".tmp/emulator.js";
buildSync({ entryPoints: ["emulator/index.ts"], bundle: true, format: "esm", outfile: emulatorScript, logLevel: "warning" });

export default defineConfig({
  test: {
    projects: [
      {
        test: { name: "unit", include: ["test/unit/**/*.test.ts"], environment: "node" },
      },
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              bindings: {
                ORTTO_API_KEY: "test-key-7f3a",
                ORTTO_API_BASE: "http://ortto.test",
                ALLOWED_ORIGINS: "https://shop.example,https://*.brand.example",
              },
              outboundService: "ortto-emulator",
              workers: [{ name: "ortto-emulator", modules: true, scriptPath: emulatorScript, compatibilityDate: "2026-04-20" }],
            },
          }),
        ],
        test: { name: "worker", include: ["test/worker/**/*.test.ts"] },
      },
      {
        plugins: [cloudflareTest({ wrangler: { configPath: "./emulator/wrangler.toml" } })],
        test: { name: "emulator", include: ["test/emulator/**/*.test.ts"] },
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
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
