// The least any relay that keeps the product's promises must do (npm run bench measures the
// relay against it): refuse other origins, ask the rate limiter, read and parse
// the body, check its shape, serialise it again with the key added at the edge, forward it, read
// Ortto's per-activity results (the page is told what became of each, and "failed" ones must be
// kept), and answer with CORS headers. No catalogue, identity, limits, location, queue or log.
// What it reaches against the pass-through is the ceiling of the ratio for any relay that reads
// what it forwards; the pass-through never reads either body.
const json = (status, body, headers) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });

export default {
  async fetch(request, env) {
    const origin = request.headers.get("origin");
    const server = request.headers.get("authorization") === `Bearer ${env.SERVER_TOKEN}`;
    if (!server && !env.ALLOWED_ORIGINS.split(",").includes(origin)) return json(403, { error: "origin" });
    if (!server && !(await env.IP_RATE_LIMITER.limit({ key: request.headers.get("cf-connecting-ip") ?? "" })).success)
      return json(429, { error: "rate limit" });
    let body;
    try {
      body = JSON.parse(await request.text());
    } catch {
      return json(400, { error: "not JSON" });
    }
    const activities = body?.activities;
    if (!Array.isArray(activities) || !activities.every((a) => typeof a?.activity_id === "string" && typeof a.fields === "object"))
      return json(400, { error: "activities" });
    const res = await fetch(`${env.ORTTO_API_BASE}/v1/activities/create`, {
      method: "POST",
      headers: { "X-Api-Key": env.ORTTO_API_KEY, "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
      redirect: "manual",
    });
    const answer = await res.json();
    return json(
      res.status,
      answer,
      origin ? { "Access-Control-Allow-Origin": origin, Vary: "Origin", Date: new Date().toUTCString() } : {},
    );
  },
};
