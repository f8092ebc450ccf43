import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { unstable_readConfig } from "wrangler";
import { parseVars } from "../../worker/vars.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const ENVIRONMENTS = [undefined, "staging", "production"] as const;
/** The parts of Wrangler's resolved config this file reads. */
interface Resolved {
  name?: string;
  vars: Record<string, unknown>;
  build: { command?: string };
  observability?: { enabled?: boolean };
  queues: {
    producers?: { binding: string; queue: string }[];
    consumers?: { queue: string; dead_letter_queue?: string }[];
  };
  durable_objects: { bindings: { name: string }[] };
  ratelimits: { name: string; namespace_id: string }[];
  analytics_engine_datasets: { binding: string; dataset?: string }[];
}
const read = (env: string | undefined): Resolved =>
  unstable_readConfig({ config: join(root, "wrangler.toml"), env }, { hideWarnings: true }) as unknown as Resolved;
const label = (env: string | undefined) => env ?? "top level";

/** Every binding the worker's code reaches (worker/env.ts; their types come from `wrangler types`). */
const BINDINGS = {
  queues: ["DELIVERY_QUEUE", "DEAD_LETTERS"],
  durableObjects: ["LIMIT_LEDGER", "UPSTREAM_PACER"],
  ratelimits: ["IP_RATE_LIMITER"],
  analytics: ["RELAY_EVENTS"],
};

describe("wrangler.toml", () => {
  for (const env of ENVIRONMENTS) {
    describe(`${label(env)}`, () => {
      const config = read(env);

      it("declares every binding (an [env.*] inherits none)", () => {
        expect(config.queues.producers?.map((p) => p.binding).sort()).toEqual([...BINDINGS.queues].sort());
        expect(config.durable_objects.bindings.map((b) => b.name).sort()).toEqual([...BINDINGS.durableObjects].sort());
        expect(config.ratelimits.map((r) => r.name)).toEqual(BINDINGS.ratelimits);
        expect(config.analytics_engine_datasets.map((d) => d.binding)).toEqual(BINDINGS.analytics);
        expect(config.queues.consumers).toHaveLength(1);
      });

      it("names its dead-letter queue the same in DEAD_LETTER_QUEUE, the consumer and the DEAD_LETTERS producer", () => {
        const dlq = config.vars.DEAD_LETTER_QUEUE;
        expect(dlq).toEqual(expect.any(String));
        expect(config.queues.consumers?.[0]?.dead_letter_queue).toBe(dlq);
        expect(config.queues.producers?.find((p) => p.binding === "DEAD_LETTERS")?.queue).toBe(dlq);
        expect(config.queues.producers?.find((p) => p.binding === "DELIVERY_QUEUE")?.queue).toBe(config.queues.consumers?.[0]?.queue);
      });

      it("has vars the relay accepts", () => {
        expect(() => parseVars(config.vars)).not.toThrow();
      });

      it("builds the snippet before bundling and keeps its logs (observability)", () => {
        expect(config.build.command).toBe("node scripts/build-if-stale.mjs");
        expect(config.observability?.enabled).toBe(true);
      });
    });
  }

  it("gives each environment its own worker, queues, dataset and rate-limit namespace", () => {
    const configs = ENVIRONMENTS.map(read);
    const distinct = (values: (string | undefined)[]) => expect(new Set(values).size).toBe(values.length);
    distinct(configs.map((c) => c.name));
    distinct(configs.flatMap((c) => c.queues.producers?.map((p) => p.queue) ?? []));
    distinct(configs.map((c) => c.analytics_engine_datasets[0]?.dataset));
    distinct(configs.map((c) => c.ratelimits[0]?.namespace_id));
  });

  it("matches the queue names the worker tests run with (vitest.config.ts)", () => {
    const top = read(undefined);
    const vitestConfig = readFileSync(join(root, "vitest.config.ts"), "utf8");
    expect(vitestConfig).toContain(`"${top.queues.consumers?.[0]?.queue}": {`);
    expect(vitestConfig).toContain(`deadLetterQueue: "${top.vars.DEAD_LETTER_QUEUE}"`);
  });
});

describe("npm run cf-typegen", () => {
  // Regenerates into .tmp from a copy of each config without its [build] step (the types do not
  // depend on it, and a build here would rewrite snippet/dist under other tests' feet), then
  // compares everything but the header, which names the output path.
  const regenerate = async (config: string, committed: string) => {
    const dir = join(root, ".tmp", "typegen", config.replace(/\W/g, "_"));
    mkdirSync(dir, { recursive: true });
    const toml = readFileSync(join(root, config), "utf8").replace(/^\[build\]\n(?:(?!\[)[^\n]*\n)*/m, "");
    const copy = join(dir, "wrangler.toml");
    writeFileSync(
      copy,
      toml.replace(/^main = "(.*)"$/m, (_, main) => `main = "${join(root, config, "..", main)}"`),
    );
    const out = join(dir, "worker-configuration.d.ts");
    await promisify(execFile)(
      join(root, "node_modules", ".bin", "wrangler"),
      ["types", "-c", copy, out, "--include-runtime=false", ...(config === "wrangler.toml" ? ["--strict-vars=false"] : [])],
      { cwd: root, env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
    );
    const body = (text: string) => text.split("\n").filter((line) => !line.startsWith("// Generated by Wrangler"));
    const fresh = readFileSync(out, "utf8").replace(/import\("[./]*\/(worker|emulator)\/index"\)/g, 'import("./index")');
    expect(body(fresh), `${committed} is stale: run npm run cf-typegen`).toEqual(body(readFileSync(join(root, committed), "utf8")));
  };

  it("has written worker/worker-configuration.d.ts from the current wrangler.toml", async () => {
    await regenerate("wrangler.toml", "worker/worker-configuration.d.ts");
  }, 60_000);

  it("has written emulator/worker-configuration.d.ts from the current emulator/wrangler.toml", async () => {
    await regenerate("emulator/wrangler.toml", "emulator/worker-configuration.d.ts");
  }, 60_000);
});
