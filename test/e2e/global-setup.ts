/// <reference types="node" />
/**
 * Starts what a developer gets from `npm start` (the relay under `wrangler dev`, the Ortto
 * emulator as its upstream, the demo page), on free ports of its own so that it can run beside
 * a developer's copy, plus a small server of fixture pages (test/e2e/pages/) on yet another
 * origin. The relay allows both page origins through ALLOWED_ORIGINS. One such stack per vitest
 * worker, so that files running side by side never share a relay (its per-IP budget and the
 * account's request budget are spent by every page of one machine); a test reads its worker's
 * URLs with `urls()` (test/e2e/helpers.ts). The stacks start in the background: setup returns
 * their URLs at once, and each e2e file waits for its stack's readiness (test/e2e/stack-ready.ts).
 *
 * It expects the snippet to be built (`npm run build`, which `npm test` and `npm run test:e2e` run).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";

export interface E2eUrls {
  /** The relay: POST /v1/activities/create, GET /relay.js, GET /healthz. */
  relay: string;
  /** The Ortto emulator: the feed at /, the control API under /_emulator/. */
  emulator: string;
  /** The demo page that dev.mjs serves (demo/index.html), as `npm start` prints it (localhost). */
  demo: string;
  /** The fixture pages of test/e2e/pages/, on an origin of their own. */
  pages: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    /** One stack per vitest worker: a file uses the one of its VITEST_POOL_ID. */
    e2e: E2eUrls[];
  }
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const pagesDir = join(dirname(fileURLToPath(import.meta.url)), "pages");
const READY_TIMEOUT_MS = 90_000;

/** A port nobody listens on now (E2E_* variables pick fixed ones instead). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const escapeAttribute = (s: string) => s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");

/**
 * The fixture pages: `GET /<name>.html` is test/e2e/pages/<name>.html with `{{LOADER}}` replaced
 * by the loader line (snippet/loader.txt), `{{RELAY}}` by the relay's origin, and the marker
 * attribute `data-e2e-attributes` by the script tag's data attributes from the query
 * (`?data-consent=required&data-debug=`); `?bfcache` serves it storable, so that Chromium may keep it in
 * its back/forward cache. Any other path answers 404 (a SPA's pushState URLs
 * never reach the server).
 */
function startPages(relay: string, port: number, stack: StackState): Promise<Server> {
  const loader = readFileSync(join(root, "snippet", "loader.txt"), "utf8").trim();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://pages");
    if (url.pathname === "/_ready") {
      // 200 once the stack is ready, 503 while it starts, 500 with dev.mjs's output if it failed.
      const status = stack.error ? 500 : stack.ready ? 200 : 503;
      res.writeHead(status, { "Content-Type": "text/plain" }).end(stack.error ?? (stack.ready ? "ready" : "starting"));
      return;
    }
    const name = /^\/([a-z-]+)\.html$/.exec(url.pathname)?.[1];
    const file = name ? join(pagesDir, `${name}.html`) : undefined;
    if (!file || !existsSync(file)) {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
      return;
    }
    const attrs = [...url.searchParams]
      .filter(([k]) => /^data-[a-z-]+$/.test(k))
      .map(([k, v]) => (v === "" ? ` ${k}` : ` ${k}="${escapeAttribute(v)}"`))
      .join("");
    const html = readFileSync(file, "utf8")
      .replaceAll("{{LOADER}}", loader)
      .replaceAll("{{RELAY}}", relay)
      .replaceAll(" data-e2e-attributes", attrs);
    // no-store keeps a page out of the back/forward cache; `?bfcache` lets it in.
    const cache = url.searchParams.has("bfcache") ? "no-cache" : "no-store";
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": cache }).end(html);
  });
  return new Promise((resolve, reject) => {
    server.on("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

/** Is any process of this group still alive? */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Ends dev.mjs and everything it started (wrangler, workerd): they share its process group. */
async function killGroup(child: ChildProcess): Promise<void> {
  const pgid = child.pid;
  if (!pgid || !groupAlive(pgid)) return;
  try {
    process.kill(-pgid, "SIGTERM");
  } catch {}
  for (let i = 0; i < 50 && groupAlive(pgid); i++) await new Promise((r) => setTimeout(r, 100));
  if (groupAlive(pgid)) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {}
  }
}

/** Where a stack's start stands, as its pages server answers `GET /_ready` (test/e2e/stack-ready.ts waits on it). */
interface StackState {
  ready: boolean;
  error?: string;
}

/**
 * Starts one stack (dev.mjs and a pages server), on the E2E_* ports for the first one if set.
 * Resolves once the pages server listens, with dev.mjs still starting: the files of the projects
 * before e2e run meanwhile, and each e2e file waits for its stack (`/_ready`) before its tests.
 */
async function startStack(first: boolean): Promise<{ urls: E2eUrls; stop: () => Promise<void> }> {
  const [relayPort, emulatorPort, demoPort, pagesPort] = await Promise.all(
    ["E2E_RELAY_PORT", "E2E_EMULATOR_PORT", "E2E_DEMO_PORT", "E2E_PAGES_PORT"].map((name) =>
      first && process.env[name] ? Number(process.env[name]) : freePort(),
    ),
  );
  const urls: E2eUrls = {
    relay: `http://127.0.0.1:${relayPort}`,
    emulator: `http://127.0.0.1:${emulatorPort}`,
    demo: `http://localhost:${demoPort}`,
    pages: `http://127.0.0.1:${pagesPort}`,
  };
  // A fresh wrangler state each run: the per-contact daily counts and the rate limiter start at zero.
  const persist = mkdtempSync(join(tmpdir(), "relay-e2e-"));
  const origins = [`http://127.0.0.1:${demoPort}`, `http://localhost:${demoPort}`, urls.pages].join(",");
  const child = spawn(process.execPath, [join(root, "scripts", "dev.mjs")], {
    cwd: root,
    // Its own process group, so that teardown can end wrangler and workerd with it.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      RELAY_PORT: String(relayPort),
      EMULATOR_PORT: String(emulatorPort),
      DEMO_PORT: String(demoPort),
      PERSIST_TO: persist,
      // Every page here comes from one address (loopback): the open-mode budget of people per network
      // would stop the suite's many visitors (it is tested in workerd, test/worker/limits.test.ts).
      RELAY_VARS: `ALLOWED_ORIGINS:${origins} PEOPLE_PER_NETWORK:100000`,
      // E2E_LOGS=1 shows what wrangler prints (the relay's log lines), for debugging a test.
      ...(process.env.E2E_LOGS ? {} : { QUIET: "1" }),
    },
  });
  // If vitest itself dies, do not leave workerd behind.
  const onExit = () => {
    try {
      if (child.pid) process.kill(-child.pid, "SIGKILL");
    } catch {}
  };
  process.once("exit", onExit);

  let output = "";
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dev.mjs was not ready within ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      const text = chunk.toString();
      output += text;
      if (process.env.E2E_LOGS) process.stderr.write(text);
      if (/^\s*ready\s*$/m.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`dev.mjs exited with ${code} before it was ready`));
    });
  });

  const state: StackState = { ready: false };
  let pages: Server | undefined;
  try {
    pages = await startPages(urls.relay, pagesPort as number, state);
  } catch (err) {
    await killGroup(child);
    rmSync(persist, { recursive: true, force: true });
    throw err;
  }
  ready.then(
    () => {
      state.ready = true;
    },
    async (err) => {
      state.error = `${(err as Error).message}\n--- dev.mjs output ---\n${output.slice(-4000)}`;
      await killGroup(child);
    },
  );

  return {
    urls,
    stop: async () => {
      process.removeListener("exit", onExit);
      await killGroup(child);
      await new Promise((r) => pages?.close(r));
      rmSync(persist, { recursive: true, force: true });
    },
  };
}

export default async function setup(project: TestProject) {
  if (!existsSync(join(root, "snippet", "dist", "relay-asset.ts"))) throw new Error("snippet/dist is missing: run `npm run build` first");
  const workers = Math.max(1, Number(project.config.maxWorkers || project.globalConfig.maxWorkers || 1));
  const started = await Promise.allSettled(Array.from({ length: workers }, (_, i) => startStack(i === 0)));
  const stacks = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await Promise.all(stacks.map((stack) => stack.stop()));
    throw failed.reason;
  }
  project.provide(
    "e2e",
    stacks.map((stack) => stack.urls),
  );
  return async () => {
    await Promise.all(stacks.map((stack) => stack.stop()));
  };
}
