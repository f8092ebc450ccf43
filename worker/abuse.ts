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

/**
 * Crawlers that run a page's JavaScript would send its activities too. They are answered 202
 * with nothing forwarded (so they do not retry) and counted. A crawler is a verified bot by
 * Cloudflare's signals, or a browser engine (it sends Sec-Fetch-Mode, as every browser does)
 * whose user agent the isbot list knows. Command-line clients such as curl are not browsers
 * and pass, so a developer can still test with them.
 */
export function isCrawler(request: Request): boolean {
  const cf = request.cf as { verifiedBotCategory?: string; botManagement?: { verifiedBot?: boolean } } | undefined;
  if (cf?.verifiedBotCategory || cf?.botManagement?.verifiedBot) return true;
  return request.headers.has("sec-fetch-mode") && isbot(request.headers.get("user-agent") ?? "");
}

export const crawlerFilter = createMiddleware<AppEnv>(async (c, next) => {
  if (!isCrawler(c.req.raw)) return next();
  c.set("outcome", "bot");
  return c.json({ activities: [] }, 202);
});
