// The one-line alternative every vendor guide shows, and what the relay is measured against:
// a Worker that attaches the key and forwards the body. No origin check, no validation, no
// limits, no location, no queue.
export default {
  async fetch(request, env) {
    return fetch(`${env.ORTTO_API_BASE}/v1/activities/create`, {
      method: "POST",
      headers: { "X-Api-Key": env.ORTTO_API_KEY, "Content-Type": "application/json" },
      body: request.body,
    });
  },
};
