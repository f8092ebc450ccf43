import { execFile } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLocalRelay } from "../fixtures/local-relay.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const TOKEN = "smoke-test-server-token-91c2";
const KEY = "smoke-test-ortto-key-5d1e";

/** Runs `npm run smoke` as a user would (node scripts/smoke.mjs …); resolves with its exit code and output. */
async function smoke(args: string[], env: Record<string, string | undefined> = {}) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [join(root, "scripts", "smoke.mjs"), ...args], {
      cwd: root,
      env: { ...process.env, ...env },
    });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, output: e.stdout + e.stderr };
  }
}

describe("npm run smoke", () => {
  let relay: Awaited<ReturnType<typeof startLocalRelay>>;
  beforeAll(async () => {
    relay = await startLocalRelay({
      ORTTO_API_KEY: KEY,
      SERVER_TOKEN: TOKEN,
      ALLOWED_ORIGINS: "https://shop.example",
      // Nothing may reach it: a dry run forwards nothing.
      ORTTO_API_BASE: "http://127.0.0.1:9",
    });
  }, 60_000);
  afterAll(() => relay?.dispose());

  it("passes every check of a healthy relay under a route prefix, and prints neither the token nor the key", async () => {
    const { code, output } = await smoke([`${relay.url}/r`, "--origin", "https://shop.example"], { SERVER_TOKEN: TOKEN });
    expect(output).toMatch(/PASS {2}GET \/healthz +upstream 127\.0\.0\.1:9/);
    expect(output).toMatch(/PASS {2}GET \/relay\.js integrity +sha384-/);
    expect(output).toMatch(/PASS {2}OPTIONS \/v1\/activities\/create from https:\/\/shop\.example/);
    expect(output).toMatch(/PASS {2}POST \/v1\/activities\/create \(server token, dry run\) +act:cm:\S+ would go to 127\.0\.0\.1:9/);
    expect(output).toContain("all 4 checks passed");
    expect(code).toBe(0);
    expect(output).not.toContain(TOKEN);
    expect(output).not.toContain(KEY);
  }, 60_000);

  it("fails, exit 1, on a wrong server token, another relay.js and an origin the relay does not allow", async () => {
    const { code, output } = await smoke([relay.url, "--integrity", "sha384-not-this-one", "--origin", "https://evil.example"], {
      SERVER_TOKEN: "wrong-token",
    });
    expect(output).toMatch(/FAIL {2}GET \/relay\.js integrity +served sha384-\S+, expected sha384-not-this-one/);
    expect(output).toMatch(/FAIL {2}OPTIONS .*Access-Control-Allow-Origin absent/);
    expect(output).toMatch(/FAIL {2}POST .* 401: The Authorization header does not carry a valid server token/);
    // /healthz's details are the server token's: a wrong one fails that check too.
    expect(output).toMatch(/FAIL {2}GET \/healthz +401: The Authorization header does not carry a valid server token/);
    expect(output).toContain("4 of 4 checks failed");
    expect(code).toBe(1);
    expect(output).not.toContain("wrong-token");
  }, 60_000);

  it("fails the event check without SERVER_TOKEN rather than skip it", async () => {
    const { code, output } = await smoke([relay.url], { SERVER_TOKEN: undefined });
    expect(output).toMatch(/FAIL {2}POST .*SERVER_TOKEN is not set/);
    expect(code).toBe(1);
  }, 60_000);

  it("fails /healthz of a relay whose vars are wrong, naming the var and the accepted values", async () => {
    const misconfigured = await startLocalRelay({ ORTTO_API_KEY: KEY, SERVER_TOKEN: TOKEN, ORTTO_REGION: "europe" });
    try {
      const { code, output } = await smoke([misconfigured.url], { SERVER_TOKEN: TOKEN });
      expect(output).toMatch(/FAIL {2}GET \/healthz +503: The relay's configuration is invalid: ORTTO_REGION must be one of us, au, eu/);
      expect(output).toMatch(/FAIL {2}POST .* 503: The relay's configuration is invalid/);
      expect(code).toBe(1);
      expect(output).not.toContain(KEY);
    } finally {
      await misconfigured.dispose();
    }
  }, 60_000);

  it("sends no event to a relay that ignores X-Relay-Dry-Run (one from before dry runs would forward it for real)", async () => {
    // A relay without dry runs: healthy, and it forwards every valid POST it is given.
    const posted: { activities?: unknown[] }[] = [];
    const old = createServer((req, res) => {
      let text = "";
      req.on("data", (chunk) => {
        text += chunk;
      });
      req.on("end", () => {
        res.setHeader("Content-Type", "application/json");
        if (req.url === "/healthz") return res.end(JSON.stringify({ status: "ok", upstream: "api.ap3api.com", sites: {} }));
        if (req.method !== "POST") return res.writeHead(404).end("{}");
        const body = JSON.parse(text) as { activities?: unknown[] };
        posted.push(body);
        if (!body.activities?.length) {
          return res
            .writeHead(400)
            .end(
              JSON.stringify({ error: "Invalid request", details: [{ path: "activities", message: "expected at least one activity" }] }),
            );
        }
        res.end(JSON.stringify({ activities: body.activities.map(() => ({ status: "ingested" })) }));
      });
    });
    await new Promise<void>((resolve) => old.listen(0, "127.0.0.1", resolve));
    try {
      const { code, output } = await smoke([`http://127.0.0.1:${(old.address() as AddressInfo).port}`], { SERVER_TOKEN: TOKEN });
      expect(posted.filter((b) => b.activities?.length)).toEqual([]);
      expect(output).toMatch(/FAIL {2}POST .*does not take dry runs/);
      expect(code).toBe(1);
    } finally {
      await new Promise((resolve) => old.close(resolve));
    }
  }, 60_000);
});
