import { beforeEach, describe, expect, it, vi } from "vitest";
import { signIdentity } from "../../worker/identity.ts";
import { emulator, healthDetails, loggedIn, ORIGIN, post, postWith, windowWithTimeLeft } from "./helpers.ts";

const SECRET = "identity-secret-for-tests";
const signed = { IDENTITY_SECRET: SECRET };
const person = (email: string, extra: Record<string, unknown> = {}) =>
  loggedIn({
    fields: { "str::first": "Chris", "str::email": email },
    key: crypto.randomUUID(),
    created: new Date().toISOString(),
    ...extra,
  });

beforeEach(async () => {
  await emulator.reset();
});

describe("signed identity (IDENTITY_SECRET)", () => {
  it("refuses an activity without a token with 401 and forwards nothing", async () => {
    const res = await postWith(signed, { activities: [person("chris@example.com")] });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({
      code: 401,
      error: "Unverified identity: identity_token is required",
      details: [{ path: "activities.0" }],
    });
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("refuses a token made for another email", async () => {
    const token = await signIdentity(SECRET, "someone-else@example.com");
    const res = await postWith(signed, { identity_token: token, activities: [person("chris@example.com")] });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toContain("does not sign this person");
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("refuses a request that mixes a signed person with another", async () => {
    const token = await signIdentity(SECRET, "chris@example.com");
    const res = await postWith(signed, { identity_token: token, activities: [person("chris@example.com"), person("victim@example.com")] });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ details: [{ path: "identity_token" }] });
  });

  it("accepts a valid token whatever the case and spacing of the email, and never forwards the token", async () => {
    const token = await signIdentity(SECRET, "chris@example.com");
    const res = await postWith(signed, { identity_token: token, activities: [person("  Chris@Example.COM ")] });
    expect(res.status).toBe(200);
    const [request] = await emulator.requests();
    expect(request?.body).not.toHaveProperty("identity_token");
    expect(JSON.stringify(request)).not.toContain(token);
    // Spaces are trimmed before Ortto; the case is Ortto's to match.
    expect(request?.body.activities?.[0]?.fields?.["str::email"]).toBe("Chris@Example.COM");
  });

  it("remembers only proven pairs: after a valid request, another token, another person or a rotated secret is checked again", async () => {
    const token = await signIdentity(SECRET, "chris@example.com");
    expect((await postWith(signed, { identity_token: token, activities: [person("chris@example.com")] })).status).toBe(200);
    // The same pair again passes (this isolate remembers it); the token in capitals is the same signature.
    expect((await postWith(signed, { identity_token: token.toUpperCase(), activities: [person("chris@example.com")] })).status).toBe(200);
    const other = `${token.slice(0, 63)}${token.endsWith("0") ? "1" : "0"}`;
    expect((await postWith(signed, { identity_token: other, activities: [person("chris@example.com")] })).status).toBe(401);
    expect((await postWith(signed, { identity_token: token, activities: [person("victim@example.com")] })).status).toBe(401);
    const rotated = { IDENTITY_SECRET: "a-new-identity-secret" };
    expect((await postWith(rotated, { identity_token: token, activities: [person("chris@example.com")] })).status).toBe(401);
  });

  it("signs an external id or a person id as given", async () => {
    const ei = loggedIn({ fields: { "str::ei": "User-42" } });
    const signsEi = { ...signed, IDENTITY_FIELD: "str::ei" };
    expect((await postWith(signsEi, { identity_token: await signIdentity(SECRET, "User-42"), activities: [ei] })).status).toBe(200);
    expect((await postWith(signsEi, { identity_token: await signIdentity(SECRET, "user-42"), activities: [ei] })).status).toBe(401);
  });

  it("refuses an activity identified only by phone, which no token can cover", async () => {
    const res = await postWith(signed, {
      identity_token: "ab".repeat(32),
      activities: [loggedIn({ fields: { "phn::phone": { c: "61", n: "401234567" } } })],
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toContain("a phone number cannot be signed");
  });

  it("refuses a signed email next to another identifier, which Ortto might merge by instead", async () => {
    const token = await signIdentity(SECRET, "forger@example.com");
    for (const extra of [
      { fields: { "str::email": "forger@example.com", "str::ei": "victim-42" } },
      { person_id: "00600e153df0a3b67ce60f00" },
    ]) {
      const res = await postWith(signed, { identity_token: token, activities: [person("forger@example.com", extra)] });
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: string }).error).toContain("exactly one of");
    }
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("refuses merge_by when identities are signed", async () => {
    const token = await signIdentity(SECRET, "chris@example.com");
    const res = await postWith(signed, { identity_token: token, merge_by: ["str::email"], activities: [person("chris@example.com")] });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ details: [{ path: "merge_by" }] });
  });

  it("runs in open mode without IDENTITY_SECRET and says so in /healthz", async () => {
    expect((await post({ activities: [person("chris@example.com")] })).status).toBe(200);
    expect(await healthDetails()).toMatchObject({ identity: "open" });
  });
});

describe("consent fields", () => {
  it("refuses an unsubscribe sent from a page", async () => {
    const attempt = person("victim@example.com", {
      fields: { "str::email": "victim@example.com", "bol::p": false, "str::u-ctx": "Unsubscribed by a stranger" },
    });
    const res = await post({ activities: [attempt] });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { details: { path: string }[] }).details.map((d) => d.path)).toEqual(
      expect.arrayContaining(["activities.0.fields.bol::p"]),
    );
    expect(await emulator.requests()).toHaveLength(0);
  });
});

describe("per-contact limit (Ortto's 50 events per activity per contact per 24 hours)", () => {
  it("refuses the 51st event for one contact and activity with 429 and Retry-After, while another contact passes", async () => {
    const alice = `alice-${crypto.randomUUID()}@example.com`;
    const fifty = Array.from({ length: 50 }, () => person(alice));
    expect((await post({ activities: fifty })).status).toBe(200);

    const res = await post({ activities: [person(alice)] });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("Retry-After"))).toBeGreaterThan(86_000);
    expect(await res.json()).toMatchObject({
      details: [{ path: "activities.0.activity_id", message: "expected at most 50 events per contact in 24 hours" }],
    });

    expect((await post({ activities: [person(`bob-${crypto.randomUUID()}@example.com`)] })).status).toBe(200);
    const order = { activity_id: "act:cm:placed-order", fields: { "str::email": alice }, attributes: { "int:cm:order-total": 1000 } };
    expect((await post({ activities: [order] })).status).toBe(200);
    expect((await emulator.activities()).activities).toHaveLength(52);
  });

  it("counts the same person however the email is written", async () => {
    const id = crypto.randomUUID();
    expect(
      (await postWith({ CONTACT_ACTIVITY_LIMIT: "2" }, { activities: [person(`Eve-${id}@Example.com`), person(`eve-${id}@example.com`)] }))
        .status,
    ).toBe(200);
    expect((await postWith({ CONTACT_ACTIVITY_LIMIT: "2" }, { activities: [person(`EVE-${id}@EXAMPLE.COM`)] })).status).toBe(429);
  });

  it("admits of a request that would cross the limit what each person has room for, and counts only that", async () => {
    const id = crypto.randomUUID();
    const limited = { CONTACT_ACTIVITY_LIMIT: "3" };
    const [a, b] = [`a-${id}@example.com`, `b-${id}@example.com`];
    expect((await postWith(limited, { activities: [person(b), person(b)] })).status).toBe(200);
    const res = await postWith(limited, { activities: [person(a), person(b), person(b)] });
    expect(res.status).toBe(207);
    expect(await res.json()).toMatchObject({ forwarded: 2, refused: [{ index: 2, path: "activities.2.activity_id" }] });
    // b's refused event was not counted: b is at 3; a has 2 left.
    expect((await postWith(limited, { activities: [person(a), person(a)] })).status).toBe(200);
    expect((await postWith(limited, { activities: [person(b)] })).status).toBe(429);
  });

  it("forwards a person's first events of one request holding more than the limit, and names the rest", async () => {
    const x = `x-${crypto.randomUUID()}@example.com`;
    const res = await postWith({ CONTACT_ACTIVITY_LIMIT: "2" }, { activities: [person(x), person(x), person(x)] });
    expect(res.status).toBe(207);
    expect(await res.json()).toMatchObject({ forwarded: 2, refused: [{ index: 2, path: "activities.2.activity_id" }] });
  });

  it("does not count a re-send (same key and created) twice", async () => {
    const limited = { CONTACT_ACTIVITY_LIMIT: "1" };
    const once = person(`r-${crypto.randomUUID()}@example.com`, { created: new Date().toISOString() });
    expect((await postWith(limited, { activities: [once] })).status).toBe(200);
    expect((await postWith(limited, { activities: [once] })).status).toBe(200);
    expect((await postWith(limited, { activities: [{ ...once, key: crypto.randomUUID() }] })).status).toBe(429);
  });

  it("counts against every identifier, so rotating the email with the same external id does not escape", async () => {
    const limited = { CONTACT_ACTIVITY_LIMIT: "2" };
    const ei = `victim-${crypto.randomUUID()}`;
    const rotating = () => loggedIn({ fields: { "str::email": `${crypto.randomUUID()}@example.com`, "str::ei": ei } });
    expect((await postWith(limited, { activities: [rotating(), rotating()] })).status).toBe(200);
    expect((await postWith(limited, { activities: [rotating()] })).status).toBe(429);
  });
});

describe("per-IP budget", () => {
  it("throttles one IP flooding with 429 and Retry-After while another IP is served", async () => {
    const flooder = "192.0.2.66";
    // The rate limit counts in fixed 60 s windows: 101 requests must fall in one.
    await windowWithTimeLeft(60, 20);
    const statuses: number[] = [];
    for (let i = 0; i < 101; i++) statuses.push((await post("{}", { ip: flooder })).status);
    expect(statuses.slice(0, 100).every((s) => s === 400)).toBe(true);
    expect(statuses[100]).toBe(429);
    const throttled = await post({ activities: [person("chris@example.com")] }, { ip: flooder });
    expect(throttled.status).toBe(429);
    expect(throttled.headers.get("Retry-After")).toBe("60");
    expect((await post({ activities: [person("chris@example.com")] }, { ip: "192.0.2.67" })).status).toBe(200);
    expect(await emulator.requests()).toHaveLength(1);
  });
});

describe("crawlers", () => {
  const googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

  it("answers Googlebot running the page's script with 202, forwards nothing, and counts it", async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    const res = await post(
      { activities: [person("chris@example.com")] },
      { headers: { "User-Agent": googlebot, "Sec-Fetch-Mode": "cors" } },
    );
    spy.mockRestore();
    expect(res.status).toBe(202);
    expect(await emulator.requests()).toHaveLength(0);
    expect(lines.map((l) => JSON.parse(l))).toContainEqual(expect.objectContaining({ outcome: "bot", status: 202 }));
  });

  it("treats Cloudflare's verified-bot signal as a crawler", async () => {
    const res = await postWith({}, { activities: [person("chris@example.com")] }, { cf: { verifiedBotCategory: "Search Engine Crawler" } });
    expect(res.status).toBe(202);
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("lets a developer's curl through", async () => {
    expect((await post({ activities: [person("chris@example.com")] }, { headers: { "User-Agent": "curl/8.5.0" } })).status).toBe(200);
  });
});

describe("secrets stay in the worker", () => {
  it("puts no key, token or raw email in any response or log line", async () => {
    const token = await signIdentity(SECRET, "chris@example.com");
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => void lines.push(String(line)));
    const bodies: string[] = [];
    try {
      for (const [bindings, body, options] of [
        [signed, { identity_token: token, activities: [person("chris@example.com")] }, {}],
        [signed, { identity_token: token, activities: [person("victim@example.com")] }, {}],
        [{}, { activities: [person("chris@example.com", { created: "2001-01-01T00:00:00Z" })] }, {}],
        [{}, { activities: [person("chris@example.com")] }, { origin: "https://evil.example" }],
        [{ ORTTO_API_KEY: undefined }, { activities: [person("chris@example.com")] }, {}],
      ] as const) {
        const res = await postWith(bindings, body, options);
        bodies.push(`${[...res.headers].join(" ")} ${await res.text()}`);
      }
      bodies.push(JSON.stringify(await healthDetails()));
    } finally {
      spy.mockRestore();
    }
    expect(lines.length).toBeGreaterThanOrEqual(5);
    for (const text of [...lines, ...bodies]) {
      expect(text).not.toContain("test-key-7f3a");
      expect(text).not.toContain(token);
      expect(text).not.toContain(SECRET);
      expect(text).not.toMatch(/(chris|victim)@example\.com/);
    }
    expect(ORIGIN).toBeTruthy();
  });
});
