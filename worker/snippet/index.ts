import { Hono } from "hono";
import { RELAY_JS, RELAY_JS_BR, RELAY_JS_ETAG } from "../../snippet/dist/relay-asset.ts";
import type { AppEnv } from "../env.ts";

/**
 * The URL is fixed (site owners paste it once), so the lifetime is short enough for a fix to
 * reach every page within the hour, and the ETag makes each revalidation a bodiless 304.
 * stale-while-revalidate lets a browser use its copy at once while it checks.
 */
const CACHE_CONTROL = "public, max-age=3600, stale-while-revalidate=86400";

type Coding = "br" | "gzip";

/**
 * The compressed bytes, made once per isolate on first use: brotli decoded from the build's base64
 * (workerd cannot compress brotli itself), gzip compressed here (the build's copy cost the bundle
 * 2.6 kB; zlib's output is the same 2.4 kB).
 */
const encoded: Partial<Record<Coding, Promise<Uint8Array<ArrayBuffer>>>> = {};
const decode = (base64: string) => Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
function compressed(coding: Coding): Promise<Uint8Array<ArrayBuffer>> {
  let bytes = encoded[coding];
  if (!bytes) {
    bytes =
      coding === "br"
        ? Promise.resolve(decode(RELAY_JS_BR))
        : new Response(new Blob([RELAY_JS]).stream().pipeThrough(new CompressionStream("gzip")))
            .arrayBuffer()
            .then((buffer) => new Uint8Array(buffer));
    // A failure is not kept: the next request tries again.
    bytes.catch(() => delete encoded[coding]);
    encoded[coding] = bytes;
  }
  return bytes;
}

/**
 * A strong ETag per representation: the gzip and brotli bodies are different bytes, and a
 * strong validator must change with the content coding (RFC 9110 §8.8.3).
 */
const etagOf = (coding?: Coding) => (coding ? `${RELAY_JS_ETAG.slice(0, -1)}-${coding}"` : RELAY_JS_ETAG);

/** The coding to answer with: brotli if accepted, else gzip, else none (q=0 refuses a coding). */
export function chooseCoding(acceptEncoding: string | undefined): Coding | undefined {
  const q = new Map<string, number>();
  for (const part of (acceptEncoding ?? "").toLowerCase().split(",")) {
    const [name = "", ...params] = part.split(";").map((s) => s.trim());
    const weight = params.find((p) => p.startsWith("q="));
    q.set(name, weight ? Number(weight.slice(2)) || 0 : 1);
  }
  const accepts = (coding: Coding) => (q.get(coding) ?? q.get("*") ?? 0) > 0;
  return accepts("br") ? "br" : accepts("gzip") ? "gzip" : undefined;
}

/** If-None-Match: does the client hold some representation of this script? (weak comparison, RFC 9110 §13.1.2). */
function matches(ifNoneMatch: string) {
  const ours = new Set([etagOf(), etagOf("br"), etagOf("gzip")]);
  return ifNoneMatch
    .split(",")
    .map((tag) => tag.trim().replace(/^W\//, ""))
    .some((tag) => tag === "*" || ours.has(tag));
}

/** `GET /relay.js`: the browser snippet, pre-compressed, cacheable and revalidated by ETag. */
export const snippet = new Hono<AppEnv>().get("/relay.js", async (c) => {
  const coding = chooseCoding(c.req.header("accept-encoding"));
  const headers = new Headers({
    "Content-Type": "text/javascript; charset=utf-8",
    "Cache-Control": CACHE_CONTROL,
    ETag: etagOf(coding),
    Vary: "Accept-Encoding",
    // Set here because this route builds its own Response (for encodeBody), which Hono does not merge with c.header().
    "X-Request-Id": c.get("requestId"),
    // A plain <script src> needs no CORS, but one pinned with integrity="…" crossorigin is
    // fetched in CORS mode and blocked without this; the script is public, with no credentials.
    "Access-Control-Allow-Origin": "*",
    // Loadable from pages that set Cross-Origin-Embedder-Policy: require-corp.
    "Cross-Origin-Resource-Policy": "cross-origin",
  });
  const ifNoneMatch = c.req.header("if-none-match");
  if (ifNoneMatch && matches(ifNoneMatch)) return new Response(null, { status: 304, headers });

  if (!coding) return new Response(RELAY_JS, { headers });
  const body = await compressed(coding);
  headers.set("Content-Encoding", coding);
  // "manual": the body is already encoded; without it workerd would compress it again.
  return new Response(body, { headers, encodeBody: "manual" });
});
