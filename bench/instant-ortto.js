// The benchmark's upstream: answers Ortto's 200 with one result per activity, at once, so that
// only the relay's and the pass-through's own work is compared. Both reach it the same way
// (Miniflare's outboundService), in the same workerd.
const result =
  '{"person_id":"00600e153df0a3b67ce60f00","person_status":"merged","activity_id":"00600e153c548806f6a4dbda","status":"ingested"}';
const answers = new Map();
const answer = (n) => {
  let body = answers.get(n);
  if (!body) {
    body = `{"activities":[${Array.from({ length: n }, () => result).join(",")}]}`;
    answers.set(n, body);
  }
  return body;
};

export default {
  async fetch(request) {
    const text = await request.text();
    let n = 0;
    for (let i = text.indexOf('"activity_id"'); i !== -1; i = text.indexOf('"activity_id"', i + 13)) n++;
    return new Response(answer(n), { headers: { "Content-Type": "application/json" } });
  },
};
