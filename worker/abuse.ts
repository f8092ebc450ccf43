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
  // Only the Bearer scheme claims to be a server: a browser adds its site's Basic credentials to a
  // same-origin request by itself (a staging site behind a password), and that is still a page.
  if (authorization === undefined || !/^\s*bearer(\s|$)/i.test(authorization)) return next();
  const given = /^\s*Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1] ?? "";
  let valid = false;
  for (const token of relayConfig(c.env).serverTokens) valid = sameSecret(given, token) || valid;
  if (!valid) {
    throw new RelayError(
      401,
      "The Authorization header does not carry a valid server token",
      [
        {
          path: "headers.authorization",
          message: "expected Bearer and one of the SERVER_TOKEN values (pages send no Authorization header)",
        },
      ],
      { reason: "server_token" },
    );
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
    throw new RelayError(
      429,
      "Too many requests from this network (IP address, or IPv6 /64); try again in a minute",
      [
        {
          path: "headers.cf-connecting-ip",
          message: "expected at most the per-network budget per minute (an IPv4 address, or an IPv6 /64)",
        },
      ],
      { reason: "ip_rate_limit", headers: { "Retry-After": String(RATE_LIMIT_PERIOD_SECONDS) } },
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
  // ALLOW_HEADLESS forgives the headless token only: a bot that also says HeadlessChrome is still a bot.
  const judged = allowHeadless ? agent.replace(/Headless(?=Chrome)/gi, "") : agent;
  return isbot(judged)
    ? `a browser whose user agent names a bot (${agent.slice(0, 120)}); see ALLOW_HEADLESS for test browsers`
    : undefined;
}

export const isCrawler = (request: Request, allowHeadless = false) => crawlerVerdict(request, allowHeadless) !== undefined;

/**
 * Answers a crawler 202 with nothing forwarded (so it does not retry), counted, and never
 * silently: the `X-Relay-Outcome: bot` header and the body say so, with the reason.
 */
export const crawlerFilter = createMiddleware<AppEnv>(async (c, next) => {
  if (c.get("server")) return next();
  const reason = crawlerVerdict(c.req.raw, relayConfig(c.env).allowHeadless);
  if (!reason) return next();
  c.set("outcome", "bot");
  c.get("log").reason = "crawler";
  return c.json({ activities: [], outcome: "bot", reason }, 202, { "X-Relay-Outcome": "bot" });
});
