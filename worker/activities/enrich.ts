import type { ActivityInput, Location } from "../../shared/activities.ts";
import type { GeoMode } from "../config.ts";

/**
 * The relay owns `location`: whatever a page sent is replaced, because a browser can claim
 * any place or IP. The IP comes from `CF-Connecting-IP`, which Cloudflare sets and a client
 * cannot override (never `X-Forwarded-For`, never the body).
 */
export function locationFor(request: Request, mode: GeoMode): Location | undefined {
  if (mode === "ip") {
    const ip = request.headers.get("cf-connecting-ip");
    return ip ? { source_ip: ip } : undefined;
  }
  if (mode === "edge") {
    const cf = request.cf as IncomingRequestCfProperties | undefined;
    if (!cf) return undefined;
    const custom = {
      country_name: cf.country,
      region_name: cf.region,
      city_name: cf.city,
      lat: cf.latitude ? Number(cf.latitude) : undefined,
      lng: cf.longitude ? Number(cf.longitude) : undefined,
    };
    const present = Object.fromEntries(Object.entries(custom).filter(([, v]) => v !== undefined && v !== "" && !Number.isNaN(v)));
    return Object.keys(present).length ? { custom: present } : undefined;
  }
  return undefined;
}

const hmacKeys = new Map<string, Promise<CryptoKey>>();
function hmacKey(secret: string): Promise<CryptoKey> {
  let key = hmacKeys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    hmacKeys.set(secret, key);
  }
  return key;
}

/**
 * The relay's keys for the activities sent without one: an HMAC, under the site's Ortto key,
 * of the activity as validated (with the page's `created`, when it sent one) and of how many
 * identical activities came before it in the request. A re-send of the same body gets the same
 * keys, so activities the page dated merge in Ortto however often the body is sent; two
 * identical events of one request stay two; and no one without the Ortto key can compute the
 * key of someone else's activity to pre-empt it.
 */
async function relayKeys(secret: string, activities: ActivityInput[]): Promise<(string | undefined)[]> {
  // The snippet keys every activity: nothing to derive.
  if (activities.every((a) => a.key !== undefined)) return [];
  const seen = new Map<string, number>();
  const key = await hmacKey(secret);
  return Promise.all(
    activities.map(async ({ location: _location, ...activity }) => {
      if (activity.key !== undefined) return undefined;
      const content = JSON.stringify(activity);
      const occurrence = seen.get(content) ?? 0;
      seen.set(content, occurrence + 1);
      const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${content}\n${occurrence}`));
      return `relay:${[...new Uint8Array(mac, 0, 20)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
    }),
  );
}

/**
 * Every activity leaves with a `key` and a `created`, so that any re-send of it (by the
 * browser, or by the relay after an ambiguous failure) merges in Ortto instead of
 * duplicating: Ortto dedupes on the (key, created) pair. The activities are the relay's own
 * (parsed from this request's body), so they are completed in place rather than copied: a
 * server's batch of 100 is 100 objects fewer to build.
 */
export async function enrichActivities(
  activities: ActivityInput[],
  location: Location | undefined,
  now: Date,
  /** The site's Ortto key: the relay's keys are HMACs under it. */
  secret: string,
): Promise<ActivityInput[]> {
  const receivedAt = now.toISOString();
  const keys = await relayKeys(secret, activities);
  for (const [i, activity] of activities.entries()) {
    const email = activity.fields?.["str::email"];
    if (typeof email === "string" && activity.fields) activity.fields["str::email"] = email.trim();
    activity.key ??= keys[i] as string;
    activity.created ??= receivedAt;
    // Replaced, never merged: a page's location is not trusted (undefined is left out of the JSON).
    activity.location = location;
  }
  return activities;
}
