#!/usr/bin/env node
/**
 * `npm run smoke -- https://relay.example.com [--origin https://shop.example] [--integrity sha384-…]
 * [--activity activity.json]`: checks a deployed relay from outside, as a page and a backend reach it,
 * and prints a pass/fail table (exit 1 on any failure). The URL may carry the route's prefix
 * (`https://shop.example/r`).
 *
 * - `/healthz` answers ok and, with the server token, every site has its Ortto key and Ortto takes it;
 * - `/relay.js` is the script this checkout built (the hash of snippet/dist, or `--integrity`), the
 *   same bytes whether served plain or brotli-compressed, so a page's `integrity="…"` holds;
 * - with `--origin`, the preflight of `/v1/activities/create` allows that origin;
 * - one server-token event (SERVER_TOKEN from the environment) as a dry run (`X-Relay-Dry-Run: 1`):
 *   validated and enriched exactly as a real one, answered with what would be sent, never forwarded;
 *   to a relay that does not take dry runs (asked first, with no activity) none is sent.
 *
 * The token is read from the environment only and never printed.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadTs, root } from "./load-ts.mjs";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { origin: { type: "string" }, integrity: { type: "string" }, activity: { type: "string" } },
});
const [url] = positionals;
if (!url || !/^https?:\/\//.test(url)) {
  console.error("usage: npm run smoke -- https://relay.example.com[/prefix] [--origin https://shop.example] [--integrity sha384-…]");
  process.exit(2);
}
const base = url.replace(/\/+$/, "");
const token = process.env.SERVER_TOKEN?.split(",")[0]?.trim();
const rows = [];
const redact = (text) => (token ? String(text).split(token).join("[SERVER_TOKEN]") : String(text));

/** Runs one check; a throw is a failure with its message. */
async function check(name, run) {
  try {
    const detail = await run();
    rows.push({ name, ok: true, detail: redact(detail ?? "") });
  } catch (err) {
    rows.push({ name, ok: false, detail: redact(err instanceof Error ? err.message : err) });
  }
}

const fetchOk = async (path, init) => {
  const res = await fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(15_000) });
  return res;
};
const assert = (cond, message) => {
  if (!cond) throw new Error(message);
};
const sri = (bytes) => `sha384-${createHash("sha384").update(bytes).digest("base64")}`;

/** The integrity of the relay.js this checkout built, or undefined without a build. */
function builtIntegrity() {
  const asset = join(root, "snippet", "dist", "relay-asset.ts");
  if (!existsSync(asset)) return undefined;
  return /RELAY_JS_INTEGRITY: string = "([^"]+)"/.exec(readFileSync(asset, "utf8"))?.[1];
}

/** The activity the dry run sends: --activity's file, or the catalogue's first with no required attribute. */
async function smokeActivity() {
  if (values.activity) return JSON.parse(readFileSync(values.activity, "utf8"));
  const { default: catalogue } = await loadTs("relay.config.ts");
  const [id] = Object.entries(catalogue.activities).find(([, a]) => !JSON.stringify(a.attributes ?? {}).includes('"required":true')) ?? [];
  if (!id) throw new Error("every activity has a required attribute: pass --activity with one activity's JSON");
  return { activity_id: id, fields: { "str::email": "relay-smoke-test@example.com" } };
}

await check("GET /healthz", async () => {
  // The details (sites, keys, mode) are answered only to the server token; anyone gets status and version.
  const res = await fetchOk("/healthz", token ? { headers: { Authorization: `Bearer ${token}` } } : {});
  const body = await res.json().catch(() => ({}));
  assert(res.status === 200 && body.status === "ok", `${res.status}: ${body.error ?? JSON.stringify(body).slice(0, 200)}`);
  if (!body.sites) return `up, version ${body.version} (SERVER_TOKEN not set: no details)`;
  const missing = Object.entries(body.sites)
    .filter(([, s]) => !s.key_configured)
    .map(([name]) => name);
  assert(!missing.length, `no Ortto key for site ${missing.join(", ")}`);
  const refused = Object.entries(body.sites)
    .filter(([, s]) => s.key_refused)
    .map(([name]) => name);
  assert(!refused.length, `Ortto refuses the key of site ${refused.join(", ")}`);
  return `upstream ${body.upstream}, identity ${body.identity}, delivery ${body.delivery}`;
});

await check("GET /relay.js integrity", async () => {
  const expected = values.integrity ?? builtIntegrity();
  const plain = await fetchOk("/relay.js", { headers: { "Accept-Encoding": "identity" } });
  assert(plain.status === 200, `${plain.status}`);
  const served = sri(Buffer.from(await plain.arrayBuffer()));
  // fetch decodes the brotli body: the page's browser checks the decoded bytes too.
  const br = await fetchOk("/relay.js", { headers: { "Accept-Encoding": "br" } });
  const decoded = sri(Buffer.from(await br.arrayBuffer()));
  assert(decoded === served, `the brotli body decodes to ${decoded}, the plain one is ${served}`);
  assert(expected, `served ${served}; no snippet/dist to compare with (npm run build, or pass --integrity)`);
  assert(served === expected, `served ${served}, expected ${expected}: an old or another relay.js is deployed`);
  return served;
});

if (values.origin) {
  await check(`OPTIONS /v1/activities/create from ${values.origin}`, async () => {
    const res = await fetchOk("/v1/activities/create", {
      method: "OPTIONS",
      headers: { Origin: values.origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type" },
    });
    const allowed = res.headers.get("access-control-allow-origin");
    assert(allowed === values.origin, `${res.status}, Access-Control-Allow-Origin ${allowed ?? "absent"}: add it to ALLOWED_ORIGINS`);
    return `${res.status}, allowed`;
  });
}

await check("POST /v1/activities/create (server token, dry run)", async () => {
  assert(token, "SERVER_TOKEN is not set in the environment (the deployment's secret, e.g. from your password manager)");
  const activity = await smokeActivity();
  const post = (dryRun, activities) =>
    fetchOk("/v1/activities/create", {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "X-Relay-Dry-Run": dryRun },
      body: JSON.stringify({ activities }),
    });
  // First a question no relay forwards (no activity): one that takes dry runs refuses the header's
  // value by name; one from before dry runs would ignore the header and send the event for real.
  const probe = await post("probe", []);
  const refused = await probe.json().catch(() => ({}));
  assert(probe.status === 400, `${probe.status}: ${refused.error ?? JSON.stringify(refused).slice(0, 200)}`);
  assert(
    refused.details?.some((d) => d.path === "headers.x-relay-dry-run"),
    "this relay does not take dry runs (X-Relay-Dry-Run): it would forward the event for real, so none was sent; deploy this version first",
  );
  const res = await post("1", [activity]);
  const body = await res.json().catch(() => ({}));
  assert(res.status === 200 && body.dry_run === true, `${res.status}: ${body.error ?? JSON.stringify(body).slice(0, 200)}`);
  const sent = body.activities?.[0];
  assert(sent?.key && sent?.created, "the answer has no keyed, dated activity");
  return `${sent.activity_id} would go to ${body.upstream} (${body.delivery}), key ${sent.key}`;
});

const width = Math.max(...rows.map((r) => r.name.length));
console.log(`\nsmoke test of ${base}\n`);
for (const r of rows) console.log(`${r.ok ? "PASS" : "FAIL"}  ${r.name.padEnd(width)}  ${r.detail}`);
const failed = rows.filter((r) => !r.ok).length;
console.log(failed ? `\n${failed} of ${rows.length} checks failed` : `\nall ${rows.length} checks passed`);
process.exit(failed ? 1 : 0);
