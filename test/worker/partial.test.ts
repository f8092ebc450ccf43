import { describe, expect, it } from "vitest";
import { signIdentity } from "../../worker/identity.ts";
import { emulator, loggedIn } from "./helpers.ts";
import { eachTestInANewIsolate, open, person, postWith, SERVER_TOKEN, unique, wrapLedger } from "./people.ts";

interface PartialAnswer {
  activities: { status: string }[];
  forwarded: number;
  queued?: number;
  refused: { index: number; path: string; message: string; details?: { path: string; message: string }[] }[];
}

eachTestInANewIsolate();

/** Every activity that reached Ortto (the emulator), by email. */
const forwarded = async () => (await emulator.requests()).flatMap((r) => (r.body.activities ?? []).map((a) => a.fields?.["str::email"]));

describe("a batch taken in part: each activity judged on its own", () => {
  it("forwards the valid activities of a batch and names each refused one by index, field and rule", async () => {
    const [a, b, c] = [unique("a"), unique("b"), unique("c")];
    const res = await postWith(open, {
      activities: [
        person(a),
        // Ortto keeps currency × 1000: four decimals cannot be.
        person(b, { attributes: { "int::v": 1.2345 } }),
        person(c),
        loggedIn({ activity_id: "act:cm:no-such-activity", key: crypto.randomUUID(), created: new Date().toISOString() }),
      ],
    });
    expect(res.status).toBe(207);
    const body = (await res.json()) as PartialAnswer;
    expect(body.forwarded).toBe(2);
    expect(body.activities).toHaveLength(2);
    expect(body.refused).toEqual([
      { index: 1, path: "activities.1.attributes.int::v", message: expect.stringMatching(/\S/) },
      { index: 3, path: "activities.3.activity_id", message: expect.stringContaining("unknown activity act:cm:no-such-activity") },
    ]);
    // Nothing invalid reaches Ortto: only the two valid ones, in one request.
    expect(await forwarded()).toEqual([a, c]);
  });

  it("names every problem of a refused activity with several, the first as its path and message", async () => {
    const [a, b] = [unique("a"), unique("b")];
    const res = await postWith(open, {
      activities: [person(a), person(b, { attributes: { "int::v": "x", "bol:cm:account-owner": "yes" } })],
    });
    expect(res.status).toBe(207);
    const [refused] = ((await res.json()) as PartialAnswer).refused;
    expect(refused?.index).toBe(1);
    expect(refused?.details?.map((d) => d.path).sort()).toEqual([
      "activities.1.attributes.bol:cm:account-owner",
      "activities.1.attributes.int::v",
    ]);
    expect(refused?.path).toBe(refused?.details?.[0]?.path);
    expect(await forwarded()).toEqual([a]);
  });

  it("refuses for merge_by an activity lacking its field beside one refused for an attribute, and forwards the rest", async () => {
    const ei = (id: string, extra: Record<string, unknown> = {}) =>
      person(unique(id), { fields: { "str::email": unique(id), "str::ei": id }, ...extra });
    const res = await postWith(open, {
      merge_by: ["str::ei"],
      activities: [ei("bad-value", { attributes: { "int::v": "x" } }), person(unique("no-ei")), ei("good")],
    });
    expect(res.status).toBe(207);
    const { refused } = (await res.json()) as PartialAnswer;
    expect(refused.map((r) => [r.index, r.path])).toEqual([
      [0, "activities.0.attributes.int::v"],
      [1, "activities.1.fields.str::ei"],
    ]);
    const sent = (await emulator.requests()).flatMap((r) => r.body.activities ?? []);
    expect(sent.map((a) => a.fields?.["str::ei"])).toEqual(["good"]);
  });

  it("a batch all refused is a 400 and forwards nothing", async () => {
    const res = await postWith(open, {
      activities: [person(unique("a"), { attributes: { "int::v": "x" } }), person(unique("b"), { fields: { "str::first": "no email" } })],
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { details: { path: string }[] };
    expect(body.details.map((d) => d.path)).toEqual(["activities.0.attributes.int::v", "activities.1"]);
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("refuses the request as a whole for what is wrong with it, not with an activity (identity_token too long)", async () => {
    const res = await postWith(open, { activities: [person(unique("a"))], identity_token: "x".repeat(129) });
    expect(res.status).toBe(400);
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("names the refused activities as the snippet wrote them (a, and its page-view shorthands)", async () => {
    const a = unique("a");
    const res = await postWith(open, {
      a: [
        { activity_id: "logged-in", key: crypto.randomUUID(), created: Date.now(), fields: { email: a } },
        { activity_id: "logged-in", key: crypto.randomUUID(), created: Date.now(), fields: { email: a }, attributes: { u: "/x" } },
      ],
      t: Date.now(),
    });
    expect(res.status).toBe(207);
    const { refused } = (await res.json()) as PartialAnswer;
    expect(refused).toEqual([{ index: 1, path: "a.1.attributes.u", message: expect.stringContaining("unknown attribute") }]);
    expect(await forwarded()).toEqual([a]);
  });

  it("takes the request's activities and identity_token as a and i, and refuses both ways at once", async () => {
    const a = unique("a");
    expect((await postWith(open, { a: [person(a)], i: "token" })).status).toBe(200);
    expect(await forwarded()).toEqual([a]);
    const twice = await postWith(open, { a: [person(a)], activities: [person(a)] });
    expect(twice.status).toBe(400);
    expect(((await twice.json()) as { details: { path: string; message: string }[] }).details).toEqual([
      { path: "a", message: "given twice: as a and as activities; send one" },
    ]);
  });

  it("answers a server's batch (SERVER_TOKEN) the same way: the valid activities forwarded, the refused named", async () => {
    const [a, b] = [unique("a"), unique("b")];
    const res = await postWith(
      open,
      { activities: [person(a, { attributes: { "int::v": "x" } }), person(b)] },
      { origin: "", contentType: "application/json", headers: { Authorization: `Bearer ${SERVER_TOKEN}` } },
    );
    expect(res.status).toBe(207);
    expect(((await res.json()) as PartialAnswer).refused.map((r) => r.index)).toEqual([0]);
    expect(await forwarded()).toEqual([b]);
  });

  it("names the activities it refused itself when Ortto refuses (400) the part it forwarded", async () => {
    await emulator.faults({ failRate: 1, statuses: [400] });
    const res = await postWith(open, { activities: [person(unique("a")), person(unique("b"), { attributes: { "int::v": "x" } })] });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string; details?: { path: string; message: string }[] };
    expect(body.error).toMatch(/^Ortto refused the activities/);
    expect(body.details).toEqual([{ path: "activities.1.attributes.int::v", message: "expected an integer" }]);
  });

  it("names the activity a signed identity fails for (401) by its index in the request, as the snippet wrote it", async () => {
    const secret = "partial-identity-secret";
    const a = unique("a");
    const token = await signIdentity(secret, a);
    const res = await postWith(
      { ...open, IDENTITY_SECRET: secret },
      { i: token, a: [person(a, { attributes: { "int::v": "x" } }), person(a), person(unique("someone-else"))] },
    );
    expect(res.status).toBe(401);
    const { details } = (await res.json()) as { details: { path: string }[] };
    expect(details.map((d) => d.path)).toEqual(["i"]);
    const unsigned = await postWith({ ...open, IDENTITY_SECRET: secret }, { a: [person(a, { attributes: { "int::v": "x" } }), person(a)] });
    expect(unsigned.status).toBe(401);
    expect(((await unsigned.json()) as { details: { path: string }[] }).details.map((d) => d.path)).toEqual(["a.1"]);
  });

  it("names in a queued answer (202) the activities it refused", async () => {
    const [a, b] = [unique("a"), unique("b")];
    const res = await postWith({ ...open, DELIVERY: "queue" }, { activities: [person(a), person(b, { attributes: { "int::v": "x" } })] });
    expect(res.status).toBe(202);
    const body = (await res.json()) as PartialAnswer;
    expect(body).toMatchObject({ forwarded: 0, queued: 1, refused: [{ index: 1, path: "activities.1.attributes.int::v" }] });
  });
});

describe("a batch taken in part: the daily limit per contact", () => {
  const limited = { ...open, CONTACT_ACTIVITY_LIMIT: "3" };

  it("forwards the events a person has room for and names each one over the contact's daily limit", async () => {
    const [a, b] = [unique("a"), unique("b")];
    expect((await postWith(limited, { activities: [person(a)] })).status).toBe(200);
    // a has room for 2 more: the first two of a's in this batch go, the third is refused; b's go.
    const res = await postWith(limited, { activities: [person(a), person(b), person(a), person(a), person(b)] });
    expect(res.status).toBe(207);
    const body = (await res.json()) as PartialAnswer;
    expect(body.forwarded).toBe(4);
    expect(body.refused).toEqual([
      {
        index: 3,
        path: "activities.3.activity_id",
        message: "expected at most 3 events per activity per contact in 24 hours (Ortto's limit)",
      },
    ]);
    expect((await forwarded()).filter((e) => e === a)).toHaveLength(3);
    // Full now: a request of a's events alone is refused whole, to come back when the limit frees.
    const full = await postWith(limited, { activities: [person(a)] });
    expect(full.status).toBe(429);
    expect(Number(full.headers.get("Retry-After"))).toBeGreaterThan(86_000);
  });

  it("names, when every valid activity is over the daily limit (429), each by its index in the request, beside those refused before", async () => {
    const a = unique("a");
    const one = { ...open, CONTACT_ACTIVITY_LIMIT: "1" };
    expect((await postWith(one, { activities: [person(a)] })).status).toBe(200);
    const res = await postWith(one, { a: [person(unique("b"), { attributes: { "int::v": "x" } }), person(a)] });
    expect(res.status).toBe(429);
    const { details } = (await res.json()) as { details: { path: string }[] };
    expect(details.map((d) => d.path)).toEqual(["a.0.attributes.int::v", "a.1.activity_id"]);
  });

  it("forwards the first events of a batch holding more than a person's daily limit, and names the rest over the contact's daily limit", async () => {
    const a = unique("a");
    const res = await postWith(limited, { activities: [person(a), person(a), person(a), person(a), person(a)] });
    expect(res.status).toBe(207);
    expect(((await res.json()) as PartialAnswer).refused.map((r) => r.index)).toEqual([3, 4]);
    expect(await forwarded()).toEqual([a, a, a]);
  });

  it("asks the ledger a few times, not once a contact, for a batch of 40 contacts each over the daily limit", async () => {
    const one = { ...open, CONTACT_ACTIVITY_LIMIT: "1" };
    const server = { origin: "", contentType: "application/json", headers: { Authorization: `Bearer ${SERVER_TOKEN}` } };
    const emails = Array.from({ length: 40 }, (_, i) => unique(`full-${i}`));
    expect((await postWith(one, { activities: emails.map((e) => person(e)) }, server)).status).toBe(200);
    let calls = 0;
    const ledger = wrapLedger((sync) => (entries) => {
      calls++;
      return sync(entries);
    });
    const fresh = unique("fresh");
    const res = await postWith({ ...one, LIMIT_LEDGER: ledger }, { activities: [...emails.map((e) => person(e)), person(fresh)] }, server);
    expect(res.status).toBe(207);
    const body = (await res.json()) as PartialAnswer;
    expect({ forwarded: body.forwarded, refused: body.refused.length }).toEqual({ forwarded: 1, refused: 40 });
    // One round of the ledger's shards for the 40 full counters, not one a counter (422 calls, 830 ms).
    expect(calls).toBeLessThanOrEqual(2 * 16);
  });

  it("admits the new events a person has room for when the batch also re-sends one already counted", async () => {
    const a = unique("a");
    const three = { ...open, CONTACT_ACTIVITY_LIMIT: "3" };
    const sent = person(a);
    expect((await postWith(three, { activities: [sent, person(a)] })).status).toBe(200);
    // Room for one new event: the re-sent one passes (already counted), the first new one goes, the second is over.
    const res = await postWith(three, { activities: [sent, person(a), person(a)] });
    expect(res.status).toBe(207);
    expect(((await res.json()) as PartialAnswer).refused.map((r) => r.index)).toEqual([2]);
  });
});
