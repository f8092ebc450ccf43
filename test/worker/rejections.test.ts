import { exports } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { emulator, loggedIn, ORIGIN, post, RELAY } from "./helpers.ts";

interface ErrorBody {
  request_id: string;
  code: number;
  error: string;
  details?: { path: string; message: string }[];
}

beforeEach(async () => {
  await emulator.reset();
});
// Nothing that the relay refuses may reach Ortto (15 bad requests in 15 s ban the relay's IP).
afterEach(async () => {
  expect(await emulator.requests()).toHaveLength(0);
});

async function rejected(res: Response, status: number): Promise<ErrorBody> {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as ErrorBody;
  expect(body.code).toBe(status);
  expect(body.request_id).toBe(res.headers.get("X-Request-Id"));
  expect(body.error).toMatch(/\S/);
  return body;
}

function detail(body: ErrorBody, path: string) {
  return body.details?.find((d) => d.path === path)?.message;
}

const daysAgo = (days: number) => new Date(Date.now() - days * 86_400_000).toISOString();

describe("POST /v1/activities/create refuses bad requests with a precise 4xx", () => {
  it("returns 403 for an origin that is not allowed, with no CORS header", async () => {
    const res = await post({ activities: [loggedIn()] }, { origin: "https://evil.example" });
    const body = await rejected(res, 403);
    expect(body.error).toContain("https://evil.example");
    expect(res.headers.get("Access-Control-Allow-Origin")).toBeNull();
  });

  it("returns 403 for a request without an Origin header", async () => {
    const body = await rejected(await post({ activities: [loggedIn()] }, { origin: null }), 403);
    expect(detail(body, "headers.origin")).toContain("ALLOWED_ORIGINS");
  });

  it("returns 403 for a look-alike of an allowed origin", async () => {
    await rejected(await post({ activities: [loggedIn()] }, { origin: "https://shop.example.evil.test" }), 403);
    await rejected(await post({ activities: [loggedIn()] }, { origin: "http://shop.example" }), 403);
  });

  it("returns 415 for a content type other than JSON or text", async () => {
    const body = await rejected(await post({ activities: [loggedIn()] }, { contentType: "application/x-www-form-urlencoded" }), 415);
    expect(detail(body, "headers.content-type")).toContain("application/json or text/plain");
  });

  it("returns 413 for a body over 2 MB", async () => {
    const body = await rejected(await post({ activities: [loggedIn({ pad: "x".repeat(2 * 1024 * 1024) })] }), 413);
    expect(body.error).toContain("2 MB");
  });

  it("returns 413 for a streamed body over 2 MB without a Content-Length, while reading it", async () => {
    const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 48) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const res = await exports.default.fetch(`${RELAY}/v1/activities/create`, {
      method: "POST",
      headers: { Origin: ORIGIN, "Content-Type": "text/plain" },
      body: stream,
    });
    await rejected(res, 413);
    expect(sent).toBeLessThan(48);
  });

  it("returns 400 for malformed JSON", async () => {
    const body = await rejected(await post("{activities: ["), 400);
    expect(body.error).toBe("The body is not valid JSON");
  });

  it.each([
    ["a JSON array", [], "body", "expected a JSON object"],
    ["a body without activities", {}, "activities", "expected an array of activities"],
    ["an empty activities array", { activities: [] }, "activities", "expected at least one activity"],
    ["an activity that is not an object", { activities: ["x"] }, "activities.0", "expected an activity object"],
    ["an unexpected top-level property", { activities: [loggedIn()], api_key: "x" }, "api_key", "unknown property api_key"],
  ])("returns 400 for %s", async (_name, payload, path, message) => {
    const body = await rejected(await post(payload), 400);
    expect(detail(body, path)).toContain(message);
  });

  it("returns 400 for more than 100 activities (Ortto's limit)", async () => {
    const body = await rejected(await post({ activities: Array.from({ length: 101 }, () => loggedIn()) }), 400);
    expect(detail(body, "activities")).toContain("at most 100 activities");
  });

  it("returns 400 naming an activity that is not in the catalogue", async () => {
    const body = await rejected(await post({ activities: [loggedIn({ activity_id: "act:cm:deleted-account" })] }), 400);
    expect(detail(body, "activities.0.activity_id")).toContain("unknown activity act:cm:deleted-account");
    expect(body.error).toContain("act:cm:deleted-account");
  });

  it("returns 400 for an activity id that does not look like act:cm:<slug>", async () => {
    const body = await rejected(await post({ activities: [loggedIn({ activity_id: "logged in" })] }), 400);
    expect(detail(body, "activities.0.activity_id")).toContain("act:cm:logged-in");
  });

  it("returns 400 naming a mistyped attribute and its type", async () => {
    const attributes = { ...loggedIn().attributes, "bol:cm:account-owner": "yes" };
    const body = await rejected(await post({ activities: [loggedIn({ attributes })] }), 400);
    expect(detail(body, "activities.0.attributes.bol:cm:account-owner")).toBe("expected a boolean");
    expect(body.error).toContain("activities.0.attributes.bol:cm:account-owner");
  });

  it("returns 400 naming an attribute that the catalogue does not declare", async () => {
    const attributes = { ...loggedIn().attributes, "str:cm:favourite-colour": "green" };
    const body = await rejected(await post({ activities: [loggedIn({ attributes })] }), 400);
    expect(detail(body, "activities.0.attributes.str:cm:favourite-colour")).toContain("unknown attribute");
  });

  it("returns 400 for a decimal where Ortto expects an integer × 1000", async () => {
    const attributes = { ...loggedIn().attributes, "int::v": 15.3 };
    const body = await rejected(await post({ activities: [loggedIn({ attributes })] }), 400);
    expect(detail(body, "activities.0.attributes.int::v")).toContain("integer");
  });

  it("returns 400 for a text attribute over 255 characters", async () => {
    const attributes = { ...loggedIn().attributes, "str:cm:payment-plan": "x".repeat(256) };
    const body = await rejected(await post({ activities: [loggedIn({ attributes })] }), 400);
    expect(detail(body, "activities.0.attributes.str:cm:payment-plan")).toBe("expected at most 255 characters");
  });

  it("returns 400 for a person field the catalogue does not allow", async () => {
    const fields = { ...loggedIn().fields, "str::nickname": "CS" };
    const body = await rejected(await post({ activities: [loggedIn({ fields })] }), 400);
    expect(detail(body, "activities.0.fields.str::nickname")).toContain("unknown person field");
  });

  it("returns 400 for a consent field, so a page cannot unsubscribe someone", async () => {
    const fields = { ...loggedIn().fields, "bol::p": false, "str::u-ctx": "Unsubscribed via a forged page" };
    const body = await rejected(await post({ activities: [loggedIn({ fields })] }), 400);
    expect(body.details?.map((d) => d.path)).toContain("activities.0.fields.bol::p");
  });

  it("returns 400 for a __proto__ key in person fields", async () => {
    const raw = JSON.stringify({ activities: [loggedIn()] }).replace('"str::first"', '"__proto__":{"admin":true},"str::first"');
    const body = await rejected(await post(raw), 400);
    expect(detail(body, "activities.0.fields.__proto__")).toContain("unknown person field");
  });

  it("returns 400 for a mistyped person field", async () => {
    const fields = { ...loggedIn().fields, "str::email": "not-an-email" };
    const body = await rejected(await post({ activities: [loggedIn({ fields })] }), 400);
    expect(detail(body, "activities.0.fields.str::email")).toBe("expected an email address");
  });

  it("returns 400 for an activity with no person_id and no identifying field", async () => {
    const body = await rejected(await post({ activities: [loggedIn({ fields: { "str::first": "Chris" } })] }), 400);
    expect(detail(body, "activities.0")).toContain("identifying person field");
  });

  it("returns 400 with Ortto's words for a created date more than 90 days ago", async () => {
    const body = await rejected(await post({ activities: [loggedIn({ created: daysAgo(91) })] }), 400);
    expect(detail(body, "activities.0.created")).toBe("Created date is more than 90 days ago");
  });

  it("returns 400 for a created date more than 5 minutes in the future", async () => {
    const body = await rejected(await post({ activities: [loggedIn({ created: daysAgo(-1) })] }), 400);
    expect(detail(body, "activities.0.created")).toContain("in the future");
  });

  it("returns 400 for a created date that is not ISO 8601", async () => {
    const body = await rejected(await post({ activities: [loggedIn({ created: "yesterday" })] }), 400);
    expect(detail(body, "activities.0.created")).toContain("ISO 8601");
  });

  it("returns 400 for a key longer than 255 characters", async () => {
    const body = await rejected(await post({ activities: [loggedIn({ key: "k".repeat(256) })] }), 400);
    expect(detail(body, "activities.0.key")).toBe("expected at most 255 characters");
  });

  it("returns 400 for an activity over 16 kB (Ortto's limit)", async () => {
    const big = {
      activity_id: "act:cm:placed-order",
      fields: { "str::email": "alex@example.com" },
      attributes: {
        "obj:cm:items": Array.from({ length: 400 }, (_, i) => ({ item_id: String(i), item_name: "Laminate desk, oak, 120 cm" })),
      },
    };
    const body = await rejected(await post({ activities: [big] }), 400);
    expect(detail(body, "activities.0")).toContain("16 kB");
  });

  it("returns 400 for an activity over 16 kB of numbers whose JSON takes 25 characters each", async () => {
    // -0.0000012345678901234567: the longest a JSON number can be written (17 digits after "0.00000").
    const big = {
      activity_id: "act:cm:placed-order",
      fields: { "str::email": "alex@example.com" },
      attributes: { "obj:cm:items": Array.from({ length: 627 }, () => -0.0000012345678901234567) },
    };
    expect(new TextEncoder().encode(JSON.stringify(big)).length).toBeGreaterThan(16 * 1024);
    const body = await rejected(await post({ activities: [big] }), 400);
    expect(detail(body, "activities.0")).toContain("16 kB");
  });

  it("counts every problem and names the first in the sentence", async () => {
    const body = await rejected(
      await post({ activities: [loggedIn({ created: daysAgo(100) }), loggedIn({ attributes: { "bol:cm:account-owner": 1 } })] }),
      400,
    );
    expect(body.details).toHaveLength(2);
    expect(body.error).toBe("Invalid request: activities.0.created Created date is more than 90 days ago (and 1 more)");
  });
});
