/**
 * Defences that run before a body is read: a per-IP request budget and the crawler filter.
 * An Origin header is no defence on its own (any script can forge it); these are.
 */
import { createMiddleware } from "hono/factory";
import { isbot } from "isbot";
import type { AppEnv } from "./env.ts";
import { RelayError } from "./errors.ts";

/** The period of the IP_RATE_LIMITER binding in wrangler.toml, for Retry-After. */
const RATE_LIMIT_PERIOD_SECONDS = 60;

/**
 * Per client IP: the Workers Rate Limiting binding (100 requests per 60 s by default, set in
 * wrangler.toml). It is local to each Cloudflare location and eventually consistent, which
 * suits a flood from one IP (that IP reaches one location) and costs no round trip; the
 * per-contact limit, which must be exact, uses a Durable Object instead.
 */
export const ipRateLimit = createMiddleware<AppEnv>(async (c, next) => {
  const ip = c.req.header("cf-connecting-ip") ?? "unknown";
  const { success } = await c.env.IP_RATE_LIMITER.limit({ key: ip });
  if (!success) {
    c.set("outcome", "throttled");
    c.get("log").reason = "ip_rate_limit";
    throw new RelayError(
      429,
      "Too many requests from this IP address; try again in a minute",
      [{ path: "headers.cf-connecting-ip", message: "expected at most the per-IP budget per minute" }],
      {
        "Retry-After": String(RATE_LIMIT_PERIOD_SECONDS),
      },
    );
  }
  await next();
});

/** A token of a browser engine in a user agent: only what claims to be a browser can be a crawler running a page's script. */
const BROWSER_ENGINE = /\b(?:Mozilla|AppleWebKit|Gecko|Chrome|Chromium|Firefox|Safari|Opera|OPR|Edg|Trident|Presto)\//;

/**
 * Crawlers that run a page's JavaScript would send its activities too. A crawler is a verified
 * bot by Cloudflare's signals, or a browser (it sends Sec-Fetch-Mode and a browser engine's
 * token in its user agent) whose user agent the isbot list knows. Other HTTP clients (curl,
 * Node's, Deno's or Bun's fetch, which send `User-Agent: node` and Sec-Fetch-Mode) are not
 * browsers and pass: they still face the origin, the limits and signed identities.
 * `allowHeadless` (ALLOW_HEADLESS, for test environments) lets headless browsers through.
 * Returns why the request is a crawler's, or undefined.
 */
export function crawlerVerdict(request: Request, allowHeadless = false): string | undefined {
  const cf = request.cf as { verifiedBotCategory?: string; botManagement?: { verifiedBot?: boolean } } | undefined;
  if (cf?.verifiedBotCategory || cf?.botManagement?.verifiedBot) return "a verified bot (Cloudflare's signals)";
  const agent = request.headers.get("user-agent") ?? "";
  if (!request.headers.has("sec-fetch-mode") || !BROWSER_ENGINE.test(agent)) return undefined;
  if (allowHeadless && /headless/i.test(agent)) return undefined;
  return isbot(agent) ? `a browser whose user agent names a bot (${agent.slice(0, 120)}); see ALLOW_HEADLESS for test browsers` : undefined;
}

export const isCrawler = (request: Request, allowHeadless = false) => crawlerVerdict(request, allowHeadless) !== undefined;

/**
 * Answers a crawler 202 with nothing forwarded (so it does not retry), counted, and never
 * silently: the `X-Relay-Outcome: bot` header and the body say so, with the reason.
 */
export const crawlerFilter = createMiddleware<AppEnv>(async (c, next) => {
  const reason = crawlerVerdict(c.req.raw, c.env.ALLOW_HEADLESS?.trim().toLowerCase() === "true");
  if (!reason) return next();
  c.set("outcome", "bot");
  c.get("log").reason = "crawler";
  return c.json({ activities: [], outcome: "bot", reason }, 202, { "X-Relay-Outcome": "bot" });
});
