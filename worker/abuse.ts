/**
 * Defences that run before a body is read: trusted senders (SERVER_TOKEN), a per-network request
 * budget and the crawler filter. An Origin header is no defence on its own (any script can forge
 * it); these are.
 */
import { createMiddleware } from "hono/factory";
import { isbot } from "isbot";
import { relayConfig } from "./config.ts";
import type { AppEnv } from "./env.ts";
import { RelayError } from "./errors.ts";
import { clientNetwork } from "./limits/network.ts";

/** Compares a given secret with an expected one in time that depends only on the expected one's length. */
function sameSecret(given: string, expected: string): boolean {
  let diff = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) diff |= (given.charCodeAt(i) | 0) ^ expected.charCodeAt(i);
  return diff === 0;
}

/**
 * A backend's batches come with `Authorization: Bearer <SERVER_TOKEN>`: such a request needs no
 * Origin and skips the budgets meant for pages (per network, people, crawlers); everything else
 * (validation, the catalogue, the per-contact limit) still applies. A wrong token is a 401 and
 * nothing is forwarded. Every configured token is compared, in constant time, so rotation (two
 * tokens) leaks nothing either; the token is never logged.
 */
export const trustedSender = createMiddleware<AppEnv>(async (c, next) => {
  c.set("network", clientNetwork(c.req.header("cf-connecting-ip")));
  const authorization = c.req.header("authorization");
  if (authorization === undefined) return next();
  const given = /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1] ?? "";
  let valid = false;
  for (const token of relayConfig(c.env).serverTokens) valid = sameSecret(given, token) || valid;
  if (!valid) {
    c.set("outcome", "identity_failed");
    c.get("log").reason = "server_token";
    throw new RelayError(401, "The Authorization header does not carry a valid server token", [
      { path: "headers.authorization", message: "expected Bearer and one of the SERVER_TOKEN values (pages send no Authorization header)" },
    ]);
  }
  c.set("server", true);
  return next();
});

/** The period of the IP_RATE_LIMITER binding in wrangler.toml, for Retry-After. */
const RATE_LIMIT_PERIOD_SECONDS = 60;

/**
 * Per client network (an IPv4 address, or an IPv6 /64): the Workers Rate Limiting binding (100
 * requests per 60 s by default, set in wrangler.toml). It is local to each Cloudflare location
 * and eventually consistent, which suits a flood from one network (it reaches one location) and
 * costs no round trip. Trusted servers are not pages and skip it.
 */
export const ipRateLimit = createMiddleware<AppEnv>(async (c, next) => {
  if (c.get("server")) return next();
  const { success } = await c.env.IP_RATE_LIMITER.limit({ key: c.get("network") });
  if (!success) {
    c.set("outcome", "throttled");
    c.get("log").reason = "ip_rate_limit";
    throw new RelayError(
      429,
      "Too many requests from this network (IP address, or IPv6 /64); try again in a minute",
      [
        {
          path: "headers.cf-connecting-ip",
          message: "expected at most the per-network budget per minute (an IPv4 address, or an IPv6 /64)",
        },
      ],
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
  if (c.get("server") || !isCrawler(c.req.raw)) return next();
  c.set("outcome", "bot");
  return c.json({ activities: [] }, 202);
});
