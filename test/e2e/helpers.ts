/// <reference types="node" />
/**
 * What the end-to-end tests share: the URLs from global-setup, Chromium (Debian's, driven by
 * playwright-core), visitors that count as people, and the emulator's view of what arrived.
 */
import { execFileSync } from "node:child_process";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, beforeEach, expect, inject } from "vitest";
import type { ActivityInput } from "../../shared/activities.ts";
import type { WireActivity } from "../../snippet/src/core.ts";

/** This worker's stack (global-setup.ts starts one per vitest worker). */
export const urls = () => {
  const stacks = inject("e2e");
  return stacks[(Number(process.env.VITEST_POOL_ID ?? 1) - 1) % stacks.length] as (typeof stacks)[number];
};

/** One activity as the emulator stored it (the fields the tests look at). */
export interface StoredActivity {
  activity_id: string;
  key?: string;
  created: string;
  fields: Record<string, unknown>;
  attributes: Record<string, unknown>;
  location?: { source_ip?: string };
  api_key: string;
  person_id: string;
}

export interface EmulatorView {
  activities: StoredActivity[];
  /** Create requests the emulator received (each relay forward is one). */
  requests: number;
  /** Re-sends merged by key + created. */
  duplicates: number;
}

export interface LoggedRequest {
  headers: Record<string, string>;
  body: { activities?: ActivityInput[] };
  status: number;
}

export async function emulator(): Promise<EmulatorView> {
  const res = await fetch(`${urls().emulator}/_emulator/activities`);
  expect(res.status).toBe(200);
  return (await res.json()) as EmulatorView;
}

export async function emulatorRequests(): Promise<LoggedRequest[]> {
  return (await (await fetch(`${urls().emulator}/_emulator/requests`)).json()) as LoggedRequest[];
}

export async function resetEmulator(): Promise<void> {
  const res = await fetch(`${urls().emulator}/_emulator/reset`, { method: "POST" });
  expect(res.status).toBe(200);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the emulator holds for `email` once nothing more is on its way, and how many re-sends it merged. */
export async function settled(email: string) {
  await sleep(1_500);
  const mine = (await emulator()).activities.filter((a) => a.fields["str::email"] === email);
  // This visitor's re-sends (merged by key + created), from the request log: the emulator's own count is every test's.
  const sent = (await emulatorRequests())
    .filter((r) => r.status < 300)
    .flatMap((r) => r.body.activities ?? [])
    .filter((a) => a.fields?.["str::email"] === email);
  return { mine, duplicates: sent.length - mine.length };
}

/** Polls until `check` returns a value that is not undefined/false, or fails after `timeout` ms with `what`. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeout = 15_000): Promise<T> {
  const end = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** Waits until the emulator holds at least `count` activities for `email`, and returns them. */
export function activitiesOf(email: string, count = 1, timeout?: number): Promise<StoredActivity[]> {
  return until(
    `${count} activit${count === 1 ? "y" : "ies"} of ${email} in the emulator`,
    async () => {
      const mine = (await emulator()).activities.filter((a) => a.fields["str::email"] === email);
      return mine.length >= count && mine;
    },
    timeout,
  );
}

/** A distinct address per test and run: the relay counts 50 events per activity per contact per day. */
const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
export const emailFor = (test: string) => `${test}.${run}@example.com`;

/** The fixture page `name` (test/e2e/pages/<name>.html) with the script tag's data attributes. */
export function pageUrl(name: string, query: Record<string, string> = {}) {
  const url = new URL(`/${name}.html`, urls().pages);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  return url.href;
}

const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/**
 * The user agent of a desktop Chrome of the installed version. Headless Chromium says
 * "HeadlessChrome", which the isbot list knows, and the relay answers crawlers 202 and forwards
 * nothing (worker/abuse.ts), so with it every test would see an empty emulator. A context's
 * `userAgent` option is not enough: a beacon sent while the page unloads leaves from the browser
 * process with the browser-wide user agent, hence the `--user-agent` flag too.
 */
function desktopUserAgent(): string {
  let version = "150.0.0.0";
  try {
    version =
      /(\d+\.\d+\.\d+\.\d+)/.exec(
        execFileSync(executablePath, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }),
      )?.[1] ?? version;
  } catch {}
  return `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${version} Safari/537.36`;
}
const userAgent = desktopUserAgent();

/**
 * Chromium, once per test file: Debian's build (CHROMIUM_PATH overrides it), headless, with
 * nothing of its own talking to the network, as a visitor rather than a crawler (above).
 * The emulator is reset before each test; with `concurrent` (a file whose tests run at once, each
 * reading only its own visitor's activities), once before the file's first test, so that a test
 * starting later cannot wipe what another is waiting for.
 */
export function useBrowser(options: { backForwardCache?: boolean; concurrent?: boolean } = {}): () => Browser {
  let browser: Browser | undefined;
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath,
      // Playwright turns the back/forward cache off unless asked.
      ignoreDefaultArgs: options.backForwardCache ? ["--disable-back-forward-cache"] : undefined,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-quic",
        "--no-first-run",
        "--disable-sync",
        `--user-agent=${userAgent}`,
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
  });
  if (options.concurrent) beforeAll(resetEmulator);
  else beforeEach(resetEmulator);
  return () => browser as Browser;
}

/** A new visitor (fresh storage), with a desktop Chrome's user agent so that it counts as a person, not a crawler. */
export async function newVisitor(browser: Browser): Promise<BrowserContext> {
  const context = await browser.newContext({ userAgent });
  const page = await context.newPage();
  expect(await page.evaluate(() => navigator.userAgent)).not.toMatch(/headless/i);
  await page.close();
  return context;
}

/**
 * A request's body as the snippet sends it, with its `a` and `i` (which the relay expands) read as
 * the request's `activities` and `identity_token`.
 */
function wireBody(raw: string): SentRequest["body"] {
  const { a, i, ...rest } = JSON.parse(raw);
  return { ...rest, ...(a === undefined ? {} : { activities: a }), ...(i === undefined ? {} : { identity_token: i }) };
}

/** Requests from the page to the relay's create endpoint. */
export interface SentRequest {
  /** "fetch" (fetch with keepalive) or "ping" (navigator.sendBeacon). */
  type: string;
  body: { activities: WireActivity[]; identity_token?: string };
  /** Whether the browser got an answer (false: aborted, offline). */
  failed?: string;
}

/**
 * Watches a page: errors thrown into it (`pageerror`), console warnings (the snippet's
 * `data-debug` messages), and what it sends to the relay.
 */
export function watch(page: Page) {
  const errors: Error[] = [];
  const warnings: string[] = [];
  const sent: SentRequest[] = [];
  page.on("pageerror", (e) => errors.push(e));
  page.on("console", (m) => {
    if (m.type() === "warning") warnings.push(m.text());
  });
  const create = (r: { url(): string; method(): string }) => r.method() === "POST" && r.url().endsWith("/v1/activities/create");
  const byRequest = new Map<object, SentRequest>();
  page.on("request", (r) => {
    if (!create(r)) return;
    const entry = { type: r.resourceType(), body: wireBody(r.postData() ?? "{}") };
    byRequest.set(r, entry);
    sent.push(entry);
  });
  page.on("requestfailed", (r) => {
    const entry = byRequest.get(r);
    if (entry) entry.failed = r.failure()?.errorText ?? "failed";
  });
  return { errors, warnings, sent };
}

/** One event in a stored queue. */
export interface StoredItem {
  a: WireActivity;
  /** Leased until (ms). */
  l?: number;
}

/**
 * The snippet's stored state as the page sees it, or null when nothing is stored: the shared
 * state (localStorage "relay"), with `q` every stored event ("relay:<tab>|<n>") and `f` the tabs'
 * failures, and `tabs` the tabs' heartbeats ("relay:<tab>"), each with its events as `q`.
 */
export async function stored(page: Page): Promise<{
  q: StoredItem[];
  f: number;
  d?: number;
  c?: boolean;
  i?: unknown;
  o?: number;
  tabs: { h: number; f: number; l?: number; q: StoredItem[] }[];
} | null> {
  return page.evaluate(() => {
    const shared = JSON.parse(localStorage.getItem("relay") ?? "null");
    const keys = Object.keys(localStorage).sort();
    const events = (prefix: string) =>
      keys.filter((k) => k.startsWith(prefix) && k.includes("|")).map((k) => JSON.parse(localStorage.getItem(k) as string));
    const tabs = keys
      .filter((k) => k.startsWith("relay:") && !k.includes("|"))
      .map((k) => ({ ...JSON.parse(localStorage.getItem(k) as string), q: events(`${k}|`) }));
    const q = events("relay:");
    if (!shared && !tabs.length && !q.length) return null;
    return { ...shared, q, f: tabs.reduce((n, t) => n + (t.f ?? 0), 0), tabs };
  });
}

/** Waits until the page has loaded relay.js (the stub is replaced by the client, marked `l`). */
/** The visitor logs in on the page: `identify` by email, then one `logged-in` event (`int::v` 1). */
export function logIn(page: Page, email: string) {
  return page.evaluate((email) => {
    relay("identify", { email });
    relay("track", "logged-in", { "int::v": 1 });
  }, email);
}

export async function snippetLoaded(page: Page) {
  await page.waitForFunction(() => (window as unknown as { relay?: { l?: 1 } }).relay?.l === 1);
}

/** A create request as the proxy saw it. */
export interface ProxiedRequest {
  /** When it arrived (ms). */
  at: number;
  body: { activities?: WireActivity[]; identity_token?: string };
}

/** What the proxy does with a request: answer it itself, or forward it to the relay (after a delay). */
export type ProxyAnswer = { status: number; headers?: Record<string, string> } | { delayMs: number } | undefined;

/**
 * A stand-in for the relay between page and relay (the page's `data-endpoint`): it notes every
 * request, including those a page makes while it unloads (which Playwright does not see), and
 * answers as `rule` says, or forwards to the relay. Close it at the end of the test.
 */
export async function startProxy() {
  const requests: ProxiedRequest[] = [];
  const proxy = {
    url: "",
    requests,
    rule: (_request: ProxiedRequest): ProxyAnswer => undefined,
    /** The requests that carried the activity with this key. */
    carrying: (key: string | undefined) => requests.filter((r) => r.body.activities?.some((a) => a.key === key)),
    close: () => new Promise<void>((resolve) => server.close(() => resolve()) && server.closeAllConnections()),
  };
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString();
    const request: ProxiedRequest = { at: Date.now(), body: raw ? wireBody(raw) : {} };
    if (req.method === "POST") requests.push(request);
    const answer = req.method === "POST" ? proxy.rule(request) : undefined;
    if (answer && "status" in answer) {
      const cors = { "Access-Control-Allow-Origin": req.headers.origin ?? "*", "Access-Control-Expose-Headers": "Retry-After, Date" };
      res.writeHead(answer.status, { ...cors, "Content-Type": "application/json", ...answer.headers });
      res.end(JSON.stringify({ code: answer.status, error: "from the test's proxy" }));
      return;
    }
    if (answer && "delayMs" in answer) await sleep(answer.delayMs);
    const headers = Object.entries(req.headers as IncomingHttpHeaders).filter(
      ([k]) => !["host", "connection", "content-length", "accept-encoding", "keep-alive"].includes(k),
    ) as [string, string][];
    try {
      const upstream = await fetch(`${urls().relay}${req.url}`, {
        method: req.method,
        headers,
        body: req.method === "POST" ? raw : undefined,
      });
      const back = [...upstream.headers].filter(
        ([k]) => !["content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"].includes(k),
      );
      res.writeHead(upstream.status, Object.fromEntries(back));
      res.end(await upstream.text());
    } catch {
      res.destroy();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}

/**
 * An init script that runs the page's clock `shiftMs` ahead (negative: behind), as a device
 * whose clock is wrong: `Date.now()`, `new Date()` and `Date()`; timers and `performance` are
 * untouched. `moveClock` moves it on later, as if that much time had passed for the page's clock.
 */
export function clockShift(shiftMs: number) {
  const Real = Date;
  const clock = window as unknown as { clockShift: number };
  clock.clockShift = shiftMs;
  const now = () => Real.now() + clock.clockShift;
  class Shifted extends Real {
    constructor(...args: unknown[]) {
      if (args.length) super(...(args as [string]));
      else super(now());
    }
    static override now() {
      return now();
    }
  }
  window.Date = new Proxy(Shifted, { apply: () => new Real(now()).toString() }) as DateConstructor;
}

/** Moves on the clock of a page started with the `clockShift` init script. */
export async function moveClock(page: Page, ms: number) {
  await page.evaluate((ms) => {
    (window as unknown as { clockShift: number }).clockShift += ms;
  }, ms);
}
