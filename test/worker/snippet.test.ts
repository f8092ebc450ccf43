/// <reference types="node" />
/** `GET /relay.js` as the worker serves it, inside workerd. */
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { RELAY_JS, RELAY_JS_ETAG } from "../../snippet/dist/relay-asset.ts";
import { chooseCoding, snippet } from "../../worker/snippet/index.ts";

const get = (headers: Record<string, string> = {}) => snippet.request("/relay.js", { headers });

describe("GET /relay.js", () => {
  it("serves the script as JavaScript, cacheable, with an ETag, loadable with integrity from any origin", async () => {
    const res = await get();
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(res.headers.get("cache-control")).toMatch(/^public, max-age=3600/);
    expect(res.headers.get("etag")).toBe(RELAY_JS_ETAG);
    expect(res.headers.get("vary")).toBe("Accept-Encoding");
    // Needed for <script integrity crossorigin> from another origin (SRI fetches in CORS mode).
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-allow-credentials")).toBeNull();
    expect(res.headers.get("content-encoding")).toBeNull();
    expect(await res.text()).toBe(RELAY_JS);
  });

  it("serves the pre-compressed brotli bytes when accepted", async () => {
    const res = await get({ "Accept-Encoding": "gzip, deflate, br, zstd" });
    expect(res.headers.get("content-encoding")).toBe("br");
    expect(res.headers.get("etag")).toBe(`${RELAY_JS_ETAG.slice(0, -1)}-br"`);
    expect(brotliDecompressSync(Buffer.from(await res.arrayBuffer())).toString()).toBe(RELAY_JS);
  });

  it("serves gzip when brotli is not accepted", async () => {
    const res = await get({ "Accept-Encoding": "gzip, br;q=0" });
    expect(res.headers.get("content-encoding")).toBe("gzip");
    expect(gunzipSync(Buffer.from(await res.arrayBuffer())).toString()).toBe(RELAY_JS);
  });

  it("answers 304 without a body to a matching If-None-Match, of any representation, weak or strong", async () => {
    for (const tag of [RELAY_JS_ETAG, `W/${RELAY_JS_ETAG}`, `"other", ${RELAY_JS_ETAG.slice(0, -1)}-gzip"`, "*"]) {
      const res = await get({ "If-None-Match": tag, "Accept-Encoding": "br" });
      expect(res.status).toBe(304);
      expect(await res.text()).toBe("");
      expect(res.headers.get("etag")).toBe(`${RELAY_JS_ETAG.slice(0, -1)}-br"`);
      expect(res.headers.get("cache-control")).toMatch(/^public/);
    }
    expect((await get({ "If-None-Match": '"stale"' })).status).toBe(200);
  });

  it("chooses brotli, then gzip, honouring q=0 and *", () => {
    expect(chooseCoding(undefined)).toBeUndefined();
    expect(chooseCoding("")).toBeUndefined();
    expect(chooseCoding("identity")).toBeUndefined();
    expect(chooseCoding("gzip")).toBe("gzip");
    expect(chooseCoding("GZIP;q=0.5, br;q=0.1")).toBe("br");
    expect(chooseCoding("br;q=0, gzip;q=0")).toBeUndefined();
    expect(chooseCoding("*")).toBe("br");
    expect(chooseCoding("*;q=0, gzip")).toBe("gzip");
    expect(chooseCoding("deflate, x-gzip")).toBeUndefined();
  });
});
