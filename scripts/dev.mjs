#!/usr/bin/env node
// `npm start`: the relay, the local Ortto emulator as its upstream, and a demo page on another
// origin, all on this machine, no Ortto key needed. Ports come from the environment so tests
// can run a second copy beside a developer's.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadTs } from "./load-ts.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const RELAY_PORT = Number(process.env.RELAY_PORT ?? 8787);
const EMULATOR_PORT = Number(process.env.EMULATOR_PORT ?? 8788);
const DEMO_PORT = Number(process.env.DEMO_PORT ?? 8080);
const PERSIST = process.env.PERSIST_TO ?? join(root, ".wrangler", "state");
const wrangler = join(root, "node_modules", ".bin", "wrangler");

const children = [];
function run(name, args, extraEnv = {}) {
  const child = spawn(wrangler, args, {
    cwd: root,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", FORCE_COLOR: "0", ...extraEnv },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const prefix = (chunk) =>
    chunk
      .toString()
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => `[${name}] ${l}`)
      .join("\n");
  child.stdout.on("data", (c) => process.env.QUIET || console.log(prefix(c)));
  child.stderr.on("data", (c) => process.env.QUIET || console.error(prefix(c)));
  child.on("exit", (code) => {
    if (!stopping) {
      console.error(`[${name}] exited with ${code}; stopping`);
      stop(1);
    }
  });
  children.push(child);
  return child;
}

// A real key in .dev.vars means the developer wants the real Ortto; otherwise use the emulator.
const devVars = existsSync(join(root, ".dev.vars")) ? readFileSync(join(root, ".dev.vars"), "utf8") : "";
const useRealOrtto = /^ORTTO_API_KEY\s*=/m.test(devVars) && !/^ORTTO_API_BASE\s*=/m.test(devVars);
const emulatorUrl = `http://127.0.0.1:${EMULATOR_PORT}`;

if (!useRealOrtto) {
  run("emulator", [
    "dev",
    "-c",
    "emulator/wrangler.toml",
    "--ip",
    "127.0.0.1",
    "--port",
    String(EMULATOR_PORT),
    "--persist-to",
    PERSIST,
    "--inspector-port",
    "0",
  ]);
}
// Locally, a log line for every request (deployed, only for those that are not plain successes).
const relayVars = [
  "--var",
  "LOG_REQUESTS:all",
  ...(useRealOrtto ? [] : ["--var", `ORTTO_API_BASE:${emulatorUrl}`, "--var", "ORTTO_API_KEY:local-emulator-key"]),
];
const extraVars = process.env.RELAY_VARS ? process.env.RELAY_VARS.split(" ").flatMap((v) => ["--var", v]) : [];
run("relay", [
  "dev",
  "--ip",
  "127.0.0.1",
  "--port",
  String(RELAY_PORT),
  "--persist-to",
  PERSIST,
  "--inspector-port",
  "0",
  ...relayVars,
  ...extraVars,
]);

// The demo page is served from a different origin than the relay, as a real site would be.
const demo = createServer((_req, res) => {
  const html = readFileSync(join(root, "demo", "index.html"), "utf8").replaceAll("{{RELAY}}", `http://127.0.0.1:${RELAY_PORT}`);
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" }).end(html);
});
demo.listen(DEMO_PORT, "127.0.0.1");

async function ready(url) {
  for (let i = 0; i < 600; i++) {
    try {
      const res = await fetch(url);
      if (res.ok) return true;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

let stopping = false;
function stop(code = 0) {
  stopping = true;
  for (const child of children) child.kill("SIGTERM");
  demo.close();
  setTimeout(() => process.exit(code), 500).unref();
}
process.on("SIGINT", () => stop(0));
process.on("SIGTERM", () => stop(0));

/**
 * The emulator starts as an empty Ortto account: the catalogue is pushed to it through the
 * definitions API, as `npm run plan -- push` pushes it to Ortto (without writing the lock file).
 */
async function pushPlan() {
  const [{ orttoClient, pushCatalogue }, { default: catalogue }] = await Promise.all([
    loadTs("scripts/plan/push.ts"),
    loadTs("relay.config.ts"),
  ]);
  const sent = await pushCatalogue(catalogue, orttoClient({ base: emulatorUrl, key: "local-emulator-key", rps: 100 }));
  process.env.QUIET || console.log(`[emulator] account holds the catalogue (${sent.map((r) => r.reason).join(", ") || "unchanged"})`);
}

const checks = [ready(`http://127.0.0.1:${RELAY_PORT}/healthz`)];
if (!useRealOrtto)
  checks.push(
    ready(`${emulatorUrl}/`).then(
      (up) =>
        up &&
        pushPlan().then(
          () => true,
          (err) => {
            console.error(`[emulator] could not push the catalogue to it: ${err.message}`);
            return false;
          },
        ),
    ),
  );
if ((await Promise.all(checks)).every(Boolean)) {
  console.log(`
  Relay        http://127.0.0.1:${RELAY_PORT}   (POST /v1/activities/create, GET /relay.js, GET /healthz)
  ${useRealOrtto ? "Upstream     Ortto (ORTTO_API_KEY from .dev.vars)" : `Emulator     ${emulatorUrl}   (what Ortto received, as its activity feed)`}
  Demo page    http://localhost:${DEMO_PORT}   (another origin, with the script tag)
  ready
`);
} else {
  console.error("the relay or the emulator did not start");
  stop(1);
}
