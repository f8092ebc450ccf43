#!/usr/bin/env node
/**
 * `npm run bench:snippet`: what a `relay('track', …)` call costs the main thread, in Chromium,
 * with 100 held 3 kB events in each of five open tabs of the site: the call itself, the work it
 * leaves for the end of its task, and what each other tab spends on the `storage` event it causes
 * (timed between a listener added before the snippet's and one added after it). Then the start-up
 * of a page (running relay.js, with its first microtasks) beside four tabs with full queues.
 *
 * `BENCH_TABS=1` measures one tab alone. `RELAY_JS=path/to/relay.js` measures another build (the default: snippet/dist/relay.js; build
 * first). Prints median and p90 in ms; exits 1 over the targets (0.5 / 1 ms per call, 5 ms start-up).
 * A benchmark, not a test: a busy machine moves its figures.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { chromium } from "playwright-core";

const TABS = Number(process.env.BENCH_TABS ?? 5);
const HELD = 100;
const CALLS = Number(process.env.BENCH_CALLS ?? 200);
const TARGET = { median: 0.5, p90: 1, startup: 5 };
const code = readFileSync(process.env.RELAY_JS ?? new URL("../snippet/dist/relay.js", import.meta.url), "utf8");
const note = "n".repeat(3000);

// A page per tab: a listener before the snippet's, then the snippet, then one after (the storage event's cost to this tab).
const page = `<!doctype html><html><head><script>
window.spent = [];
addEventListener("storage", () => { window.t0 = performance.now(); });
</script>
<script>window.relay=window.relay||function(){(relay.q=relay.q||[]).push(arguments)}</script>
<script src="/relay.js" data-endpoint="http://127.0.0.1:9"></script>
<script>addEventListener("storage", () => { window.spent.push(performance.now() - window.t0); });</script>
</head><body></body></html>`;
const blank = "<!doctype html><html><head></head><body></body></html>";
// Cross-origin isolated, so that performance.now() has microseconds, not Chromium's 100 µs steps.
const isolated = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" };
const server = createServer((req, res) => {
  if (req.url === "/relay.js") res.writeHead(200, { "Content-Type": "text/javascript", ...isolated }).end(code);
  else res.writeHead(200, { "Content-Type": "text/html", ...isolated }).end(req.url === "/blank" ? blank : page);
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

let version = "150.0.0.0";
try {
  version = /(\d+\.\d+\.\d+\.\d+)/.exec(execFileSync("/usr/bin/chromium", ["--version"], { encoding: "utf8" }))?.[1] ?? version;
} catch {}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-timer-throttling", "--disable-renderer-backgrounding"],
});
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], p90: s[Math.floor(s.length * 0.9)] };
};
const fmt = (x) => x.toFixed(3);

try {
  const context = await browser.newContext({ userAgent: `Mozilla/5.0 (X11; Linux x86_64) Chrome/${version} Safari/537.36` });
  const tabs = [];
  for (let t = 0; t < TABS; t++) {
    const tab = await context.newPage();
    await tab.goto(`${origin}/`);
    await tab.waitForFunction(() => window.relay?.l === 1);
    // 100 held events (no identity: nothing is sent), 3 kB each.
    await tab.evaluate(
      ({ held, note }) => {
        for (let n = 0; n < held; n++) relay("track", "viewed-page", { "txt:cm:note": note, "int::v": n });
      },
      { held: HELD, note },
    );
    tabs.push(tab);
  }
  await new Promise((r) => setTimeout(r, 500));
  for (const tab of tabs) await tab.evaluate(() => window.spent.splice(0));
  const [first, ...others] = tabs;
  // Each call in a task of its own, timed with the work it leaves for the end of its task.
  const own = await first.evaluate(
    async ({ calls, note }) => {
      const times = [];
      for (let n = 0; n < calls; n++) {
        await new Promise((r) => setTimeout(r, 5));
        const t = performance.now();
        relay("track", "viewed-page", { "txt:cm:note": note, "int::v": n });
        await null;
        times.push(performance.now() - t);
      }
      return times;
    },
    { calls: CALLS, note },
  );
  await new Promise((r) => setTimeout(r, 500));
  // What the other tabs spent on the storage events of those calls, per call (spread evenly: their events are not matched to calls).
  const spentByTab = await Promise.all(others.map((tab) => tab.evaluate(() => window.spent.reduce((a, b) => a + b, 0))));
  const othersPerCall = spentByTab.reduce((a, b) => a + b, 0) / CALLS;
  const call = stats(own);
  const total = { median: call.median + othersPerCall, p90: call.p90 + othersPerCall };
  console.log(`relay('track') with ${HELD} held 3 kB events in each of ${TABS} tabs (${CALLS} calls)`);
  console.log(`  the calling tab          median ${fmt(call.median)} ms  p90 ${fmt(call.p90)} ms`);
  console.log(`  the other tabs, per call        ${fmt(othersPerCall)} ms (storage events)`);
  console.log(`  in all                   median ${fmt(total.median)} ms  p90 ${fmt(total.p90)} ms`);

  // Start-up beside the full tabs (still open, so live: nothing to adopt), in a new page each
  // time: first the browser's own load of the origin's localStorage into the page (any script's
  // first access pays it, whatever it reads), then the snippet's script run and its first microtasks.
  const loads = [];
  const startups = [];
  for (let n = 0; n < 5; n++) {
    const fresh = await context.newPage();
    await fresh.goto(`${origin}/blank`);
    const [load, run] = await fresh.evaluate(async (code) => {
      let t = performance.now();
      localStorage.getItem("unrelated");
      const load = performance.now() - t;
      const s = document.createElement("script");
      s.dataset.endpoint = "http://127.0.0.1:9";
      s.textContent = code;
      t = performance.now();
      document.head.append(s);
      await null;
      return [load, performance.now() - t];
    }, code);
    loads.push(load);
    startups.push(run);
    await fresh.close();
  }
  const startup = stats(startups);
  console.log(`start-up beside ${TABS} tabs of ${HELD} held events: median ${fmt(startup.median)} ms (${startups.map(fmt).join(", ")})`);
  console.log(`  (before it, the browser's load of the origin's storage at a page's first access: median ${fmt(stats(loads).median)} ms)`);
  const over = total.median > TARGET.median || total.p90 > TARGET.p90 || startup.median > TARGET.startup;
  if (over) console.log(`over target (median ${TARGET.median} ms, p90 ${TARGET.p90} ms, start-up ${TARGET.startup} ms)`);
  process.exitCode = over ? 1 : 0;
} finally {
  await browser.close();
  server.close();
}
