import { beforeEach, describe, expect, it } from "vitest";
import { signIdentity } from "../../worker/identity.ts";
import { emulator, loggedIn, post, postWith } from "./helpers.ts";

/**
 * Inputs at the edge of what the relay takes: signed identities bound to their identifier kind,
 * requests Ortto would fail (refused with a 400 naming the field), and which user agents are crawlers.
 */
const SECRET = "identity-secret-for-tests";
const now = () => new Date().toISOString();

interface Refusal {
  code: number;
  error: string;
  details: { path: string; message: string }[];
}

beforeEach(async () => {
  await emulator.reset();
});

describe("signed identities are bound to the identifier kind the site signs (IDENTITY_FIELD)", () => {
  it("refuses a token made for an external id when the same text is sent as an email", async () => {
    // The site signs usernames; someone registers the username victim@example.com.
    const token = await signIdentity(SECRET, "victim@example.com");
    const bindings = { IDENTITY_SECRET: SECRET, IDENTITY_FIELD: "str::ei" };
    const asEmail = loggedIn({ fields: { "str::email": "victim@example.com" } });
    const res = await postWith(bindings, { identity_token: token, activities: [asEmail] });
    expect(res.status).toBe(401);
    const body = (await res.json()) as Refusal;
    expect(body.details).toEqual([{ path: "activities.0.fields.str::email", message: expect.stringContaining("IDENTITY_FIELD") }]);
    // The username itself still verifies.
    const asUsername = loggedIn({ fields: { "str::ei": "victim@example.com" } });
    expect((await postWith(bindings, { identity_token: token, activities: [asUsername] })).status).toBe(200);
    expect(await emulator.requests()).toHaveLength(1);
  });

  it("refuses one token naming one value by two kinds in one request (str::email by default)", async () => {
    const token = await signIdentity(SECRET, "x@example.com");
    const res = await postWith(
      { IDENTITY_SECRET: SECRET },
      {
        identity_token: token,
        activities: [loggedIn({ fields: { "str::email": "x@example.com" } }), loggedIn({ fields: { "str::ei": "x@example.com" } })],
      },
    );
    expect(res.status).toBe(401);
    expect(((await res.json()) as Refusal).details[0]?.path).toBe("activities.1.fields.str::ei");
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("verifies a person id when the site signs person ids", async () => {
    const id = "00600e153df0a3b67ce60f00";
    const activity = { activity_id: "act:cm:viewed-page", person_id: id, attributes: {} };
    const token = await signIdentity(SECRET, id);
    expect(
      (await postWith({ IDENTITY_SECRET: SECRET, IDENTITY_FIELD: "person_id" }, { identity_token: token, activities: [activity] })).status,
    ).toBe(200);
    const refused = await postWith({ IDENTITY_SECRET: SECRET }, { identity_token: token, activities: [activity] });
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as Refusal).details[0]?.path).toBe("activities.0.person_id");
  });
});

describe("requests Ortto would fail are refused with a 400 naming the field", () => {
  it("refuses a client key without created, which would duplicate on every re-send", async () => {
    const body = { activities: [loggedIn({ key: "order-1001" })] };
    for (let i = 0; i < 2; i++) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as Refusal).details).toContainEqual({
        path: "activities.0.created",
        message: expect.stringContaining("required when key is set"),
      });
    }
    expect(await emulator.requests()).toHaveLength(0);
    // With created, the re-send merges.
    const dated = { activities: [loggedIn({ key: "order-1001", created: now() })] };
    expect((await post(dated)).status).toBe(200);
    expect((await post(dated)).status).toBe(200);
    expect((await emulator.activities()).activities).toHaveLength(1);
  });

  it("does not count an empty external id as identifying", async () => {
    for (const ei of ["", "   "]) {
      const res = await post({ activities: [loggedIn({ fields: { "str::ei": ei } })] });
      expect(res.status).toBe(400);
      expect(((await res.json()) as Refusal).details).toContainEqual({
        path: "activities.0.fields.str::ei",
        message: expect.stringContaining("non-empty"),
      });
    }
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("refuses an activity lacking a field merge_by names, and forwards the others", async () => {
    const res = await post({ merge_by: ["str::ei"], activities: [loggedIn(), loggedIn({ fields: { "str::ei": "User-42" } })] });
    expect(res.status).toBe(207);
    expect(((await res.json()) as { refused: unknown[] }).refused).toEqual([
      { index: 0, path: "activities.0.fields.str::ei", message: expect.stringContaining("merge_by") },
    ]);
    const forwarded = (await emulator.requests()).flatMap((r) => r.body.activities ?? []);
    expect(forwarded.map((a) => a.fields?.["str::ei"])).toEqual(["User-42"]);
  });

  it("refuses merge_by naming a field every activity lacks, forwarding nothing", async () => {
    const res = await post({ merge_by: ["str::ei"], activities: [loggedIn(), loggedIn()] });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Refusal).details).toEqual([
      { path: "activities.0.fields.str::ei", message: expect.stringContaining("merge_by") },
      { path: "activities.1.fields.str::ei", message: expect.stringContaining("merge_by") },
    ]);
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("forwards time zones in their canonical IANA spelling and refuses UTC offsets", async () => {
    const order = (timezone: string) => ({
      activity_id: "act:cm:placed-order",
      fields: { "str::email": "chris@example.com" },
      attributes: { "dtz:cm:delivery-date": { year: 2026, month: 12, day: 24, timezone } },
    });
    for (const zone of ["+05:30", "-0800", "Mars/Olympus"]) {
      const res = await post({ activities: [order(zone)] });
      expect(res.status, zone).toBe(400);
      expect(((await res.json()) as Refusal).details[0]?.path).toBe("activities.0.attributes.dtz:cm:delivery-date.timezone");
    }
    expect(await emulator.requests()).toHaveLength(0);
    expect((await post({ activities: [order("australia/sydney"), order("utc"), order("Australia/Sydney")] })).status).toBe(200);
    const [request] = await emulator.requests();
    const zones = (request?.body.activities ?? []).map(
      (a) => (a.attributes?.["dtz:cm:delivery-date"] as { timezone?: string } | undefined)?.timezone,
    );
    expect(zones).toEqual(["Australia/Sydney", "UTC", "Australia/Sydney"]);
  });
});

describe("only browsers with a bot's user agent and verified bots are crawlers", () => {
  const headless = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36";

  it("forwards Node's fetch with its default headers", async () => {
    const res = await post(
      { activities: [loggedIn()] },
      { headers: { "User-Agent": "node", "Sec-Fetch-Mode": "cors", Accept: "*/*", "Accept-Language": "*" } },
    );
    expect(res.status).toBe(200);
    expect(await emulator.requests()).toHaveLength(1);
  });

  it("says so when it takes a headless browser for a crawler, in a header and in the body", async () => {
    const res = await post({ activities: [loggedIn()] }, { headers: { "User-Agent": headless, "Sec-Fetch-Mode": "cors" } });
    expect(res.status).toBe(202);
    expect(res.headers.get("X-Relay-Outcome")).toBe("bot");
    expect(await res.json()).toEqual({ activities: [], outcome: "bot", reason: expect.stringContaining("HeadlessChrome") });
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("lets a headless test browser through with ALLOW_HEADLESS, and still stops Googlebot", async () => {
    const allow = { ALLOW_HEADLESS: "true" };
    expect(
      (await postWith(allow, { activities: [loggedIn()] }, { headers: { "User-Agent": headless, "Sec-Fetch-Mode": "cors" } })).status,
    ).toBe(200);
    const googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const bot = await postWith(allow, { activities: [loggedIn()] }, { headers: { "User-Agent": googlebot, "Sec-Fetch-Mode": "cors" } });
    expect(bot.status).toBe(202);
    expect(bot.headers.get("X-Relay-Outcome")).toBe("bot");
    expect(await emulator.requests()).toHaveLength(1);
  });

  it("still stops a bot user agent that also says HeadlessChrome under ALLOW_HEADLESS", async () => {
    const agent =
      "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const res = await postWith(
      { ALLOW_HEADLESS: "true" },
      { activities: [loggedIn()] },
      { headers: { "User-Agent": agent, "Sec-Fetch-Mode": "cors" } },
    );
    expect(res.headers.get("X-Relay-Outcome")).toBe("bot");
    expect(await emulator.requests()).toHaveLength(0);
  });
});
