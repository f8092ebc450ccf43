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

/**
 * The relay's key for an activity sent without one: random, so that two events are two activities
 * however alike they are and however still workerd's clock stands (only a sender's own `key` +
 * `created` marks two sends as one event). Re-sends by the relay merge because the key travels
 * with the queue message; nobody can guess it to pre-empt someone else's activity.
 */
function relayKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(20));
  let hex = "relay:";
  for (const b of bytes) hex += b.toString(16).padStart(2, "0");
  return hex;
}

/**
 * Every activity leaves with a `key` and a `created`, so that any re-send of it (by the
 * browser, or by the relay after an ambiguous failure) merges in Ortto instead of
 * duplicating: Ortto dedupes on the (key, created) pair. The activities are the relay's own
 * (parsed from this request's body), so they are completed in place rather than copied: a
 * server's batch of 100 is 100 objects fewer to build.
 */
export function enrichActivities(activities: ActivityInput[], location: Location | undefined, now: Date): ActivityInput[] {
  let receivedAt: string | undefined;
  for (const activity of activities) {
    const email = activity.fields?.["str::email"];
    if (typeof email === "string" && activity.fields) activity.fields["str::email"] = email.trim();
    activity.key ??= relayKey();
    activity.created ??= receivedAt ??= now.toISOString();
    // Replaced, never merged: a page's location is not trusted (undefined is left out of the JSON).
    activity.location = location;
  }
  return activities;
}
