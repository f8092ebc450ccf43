/// <reference types="node" />
/** `GET /relay.js` from the relay under `wrangler dev`: the bytes a browser gets, as it asks for them. */
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { urls } from "./helpers.ts";

const built = readFileSync(join(import.meta.dirname, "..", "..", "snippet", "dist", "relay.js"));

/** A raw GET (node:http, which neither asks for nor decodes compression by itself). */
function get(path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }>((resolve, reject) => {
    request(new URL(path, urls().relay), { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    })
      .on("error", reject)
      .end();
  });
}

describe("GET /relay.js", () => {
  it("answers text/javascript with a cache lifetime and a strong ETag, the built script byte for byte", async () => {
    const res = await get("/relay.js", { "Accept-Encoding": "identity" });
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(res.headers["cache-control"]).toMatch(/max-age=\d+/);
    expect(res.headers.etag).toMatch(/^"[^"]+"$/);
    expect(res.headers["content-encoding"]).toBeUndefined();
    expect(res.body.equals(built)).toBe(true);
  });

  it("answers brotli to a client that asks for br, and gzip to one that asks for gzip", async () => {
    // One coding per request: wrangler dev, like Cloudflare's edge, hands the worker its own
    // Accept-Encoding and re-encodes the answer to the client's first acceptable coding.
    const br = await get("/relay.js", { "Accept-Encoding": "br" });
    expect(br.status).toBe(200);
    expect(br.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(br.headers["content-encoding"]).toBe("br");
    expect(br.headers.vary).toMatch(/accept-encoding/i);
    expect(br.headers.etag).toMatch(/^"[^"]+"$/);
    expect(br.body.length).toBeLessThan(built.length);
    expect(brotliDecompressSync(br.body).equals(built)).toBe(true);

    const gzip = await get("/relay.js", { "Accept-Encoding": "gzip" });
    expect(gzip.status).toBe(200);
    expect(gzip.headers["content-encoding"]).toBe("gzip");
    expect(gzip.headers.etag).toMatch(/^"[^"]+"$/);
    // scripts/size.mjs holds the budget; this is its hard cap (2,600 B with correctness).
    expect(gzip.body.length).toBeLessThanOrEqual(2_600);
    expect(gunzipSync(gzip.body).equals(built)).toBe(true);

    // What a browser sends: compressed either way, and the same script.
    const browser = await get("/relay.js", { "Accept-Encoding": "gzip, deflate, br, zstd" });
    expect(browser.status).toBe(200);
    const coding = browser.headers["content-encoding"];
    expect(["gzip", "br"]).toContain(coding);
    expect((coding === "br" ? brotliDecompressSync(browser.body) : gunzipSync(browser.body)).equals(built)).toBe(true);
  });

  it("answers 304 without a body to a revalidation with the ETag it gave", async () => {
    const first = await get("/relay.js", { "Accept-Encoding": "gzip" });
    const again = await get("/relay.js", { "Accept-Encoding": "gzip", "If-None-Match": String(first.headers.etag) });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
    expect(again.headers.etag).toBe(first.headers.etag);
  });
});
