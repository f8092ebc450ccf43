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
 * Every activity leaves with a `key` and a `created`, so that any re-send of it (by the
 * browser, or by the relay after an ambiguous failure) merges in Ortto instead of
 * duplicating: Ortto dedupes on the (key, created) pair.
 */
export function enrichActivities(activities: ActivityInput[], location: Location | undefined, now: Date): ActivityInput[] {
  const receivedAt = now.toISOString();
  return activities.map(({ location: _ignored, ...activity }) => ({
    ...activity,
    ...(typeof activity.fields?.["str::email"] === "string"
      ? { fields: { ...activity.fields, "str::email": activity.fields["str::email"].trim() } }
      : {}),
    key: activity.key ?? crypto.randomUUID(),
    created: activity.created ?? receivedAt,
    ...(location ? { location } : {}),
  }));
}
