import { exports } from "cloudflare:workers";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { pushPlan } from "../fixtures/account.ts";
import { call, createJson, JSON_HEADERS, loggedIn, stored } from "./helpers.ts";

/** A brand-new account: no definitions, no custom fields. */
const emptyAccount = () => call("/_emulator/reset?account=1", { method: "POST" });

const send = async (method: "POST" | "PUT", path: string, body: unknown = {}) => {
  const res = await call(path, { method, headers: JSON_HEADERS, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

const signedUp = {
  name: "Signed up",
  icon_id: "happy-illustration",
  track_conversion_value: true,
  touch: true,
  filterable: true,
  visible_in_feeds: true,
  display_style: { type: "activity_template", title: "Signed up for {{attribute.plan}}" },
  attributes: [
    { name: "Plan", display_type: "single_select", field_id: "" },
    { name: "Seats", display_type: "integer", field_id: "" },
    { name: "First name", display_type: "text", field_id: "str::first" },
  ],
};

beforeEach(emptyAccount);
// The other files of this project expect the catalogue's account.
afterAll(() => pushPlan("http://emulator", (input, init) => exports.default.fetch(input as string, init)));

describe("the emulated account's activity definitions", () => {
  it("starts empty, as a new account: an activity the catalogue has is unknown until it is created", async () => {
    const { status, body } = await createJson({ activities: [loggedIn()] });
    expect(status).toBe(400);
    expect(body.error).toBe("Unknown activity act:cm:logged-in");
    expect((await send("POST", "/v1/instance-schema/get", { namespaces: ["cm"] })).body).toEqual({ activities: [] });
  });

  it("creates a definition with the ids Ortto derives from each name and display type", async () => {
    const { status, body } = await send("POST", "/v1/definitions/activity/create", signedUp);
    expect(status).toBe(200);
    expect(body).toMatchObject({ activity_field_id: "act:cm:signed-up", state: "live", track_conversion_value: true, touch: true });
    expect((body.attributes as { attribute_field_id: string }[]).map((a) => a.attribute_field_id)).toEqual([
      "str:cm:plan",
      "int:cm:seats",
      "str:cm:first-name",
    ]);
    const created = await createJson({
      activities: [
        {
          activity_id: "act:cm:signed-up",
          fields: { "str::email": "chris@example.com" },
          attributes: { "str:cm:plan": "pro", "int:cm:seats": 3, "int::v": 15300 },
        },
      ],
    });
    expect(created.status).toBe(200);
    expect((await stored()).activities[0]?.attributes).toEqual({ "str:cm:plan": "pro", "int:cm:seats": 3, "int::v": 15300 });
  });

  it("refuses a second activity of the same name, in any case", async () => {
    await send("POST", "/v1/definitions/activity/create", signedUp);
    const { status, body } = await send("POST", "/v1/definitions/activity/create", { ...signedUp, name: "signed UP" });
    expect(status).toBe(400);
    expect(body.error).toBe('An activity named "signed UP" already exists');
  });

  it("refuses a 16th attribute, an unknown display type and a missing key", async () => {
    const sixteen = Array.from({ length: 16 }, (_, i) => ({ name: `A${i}`, display_type: "text" }));
    expect((await send("POST", "/v1/definitions/activity/create", { ...signedUp, attributes: sixteen })).body.error).toBe(
      "attributes: An activity has at most 15 attributes",
    );
    const place = { ...signedUp, attributes: [{ name: "Where", display_type: "place" }] };
    expect((await send("POST", "/v1/definitions/activity/create", place)).status).toBe(400);
    const res = await call("/v1/definitions/activity/create", { method: "POST", body: JSON.stringify(signedUp) });
    expect(res.status).toBe(401);
  });

  it("modifies by activity_field_id, replacing the attributes: one left out is no longer defined", async () => {
    await send("POST", "/v1/definitions/activity/create", signedUp);
    const modified = await send("PUT", "/v1/definitions/activity/modify", {
      ...signedUp,
      name: "Registered",
      activity_field_id: "act:cm:signed-up",
      state: "live",
      attributes: signedUp.attributes.slice(0, 1),
    });
    expect(modified.status).toBe(200);
    // The id stays when the name changes, as in Ortto's app.
    expect(modified.body).toMatchObject({ activity_field_id: "act:cm:signed-up", name: "Registered" });
    await createJson({
      activities: [
        {
          activity_id: "act:cm:signed-up",
          fields: { "str::email": "c@example.com" },
          attributes: { "str:cm:plan": "pro", "int:cm:seats": 3 },
        },
      ],
    });
    const [activity] = (await stored()).activities;
    expect(activity?.attributes).toEqual({ "str:cm:plan": "pro" });
    expect(activity?.ignored_attributes).toEqual(["int:cm:seats"]);
    const unknown = await send("PUT", "/v1/definitions/activity/modify", { ...signedUp, activity_field_id: "act:cm:nope" });
    expect(unknown.status).toBe(404);
  });

  it("keeps its definitions through a plain reset, which forgets only the traffic", async () => {
    await send("POST", "/v1/definitions/activity/create", signedUp);
    await call("/_emulator/reset", { method: "POST" });
    const { body } = await send("POST", "/v1/instance-schema/get", { namespaces: ["cm"] });
    expect((body.activities as { activity_field_id: string }[]).map((a) => a.activity_field_id)).toEqual(["act:cm:signed-up"]);
  });

  it("answers the definitions API's requests beyond the account's budget 429 with try-in-seconds", async () => {
    await call("/_emulator/faults", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ maxRps: 1, tryInSeconds: 7 }),
    });
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await send("POST", "/v1/person/custom-field/get"));
    const limited = answers.find((a) => a.status === 429);
    expect(limited?.body).toEqual({ error: { code: "rate-limit", message: "rate limit", "try-in-seconds": 7 } });
    await call("/_emulator/faults", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  });
});

describe("the emulated account's custom person fields", () => {
  it("creates a field with the id Ortto derives, lists it, and then accepts it on a person", async () => {
    await send("POST", "/v1/definitions/activity/create", signedUp);
    const unknown = await createJson({
      activities: [{ activity_id: "act:cm:signed-up", fields: { "str::email": "c@example.com", "str:cm:company": "Acme" } }],
    });
    expect(unknown.body.activities?.[0]).toEqual({ person_status: "failed", status: "failed" });

    const { status, body } = await send("POST", "/v1/person/custom-field/create", { type: "text", name: "Company", track_changes: false });
    expect(status).toBe(200);
    expect(body).toEqual({
      field: { id: "str:cm:company", name: "Company", display_type: "text", liquid_name: "company" },
      tracked_value: false,
    });
    expect((await send("POST", "/v1/person/custom-field/get")).body).toEqual({ fields: [body] });
    const known = await createJson({
      activities: [{ activity_id: "act:cm:signed-up", fields: { "str::email": "c@example.com", "str:cm:company": "Acme" } }],
    });
    expect(known.body.activities?.[0]?.status).toBe("ingested");
    const again = await send("POST", "/v1/person/custom-field/create", { type: "text", name: "company" });
    expect(again.status).toBe(400);
  });

  it("refuses a 101st custom field", async () => {
    for (let i = 0; i < 100; i++)
      expect((await send("POST", "/v1/person/custom-field/create", { type: "integer", name: `F${i}` })).status).toBe(200);
    const { status, body } = await send("POST", "/v1/person/custom-field/create", { type: "integer", name: "One too many" });
    expect(status).toBe(400);
    expect(body.error).toBe("An account has at most 100 custom fields");
  });
});

describe("the feed and attributes the account does not define", () => {
  it("lists each ignored attribute as ignored: not defined in this account, and renders the account's display template", async () => {
    await send("POST", "/v1/definitions/activity/create", signedUp);
    await createJson({
      activities: [
        {
          activity_id: "act:cm:signed-up",
          fields: { "str::first": "Chris", "str::last": "Smith", "str::email": "c@example.com" },
          attributes: { "str:cm:plan": "pro", "str:cm:coupon": "XMAS" },
        },
      ],
    });
    const html = await (await call("/")).text();
    expect(html).toContain("<strong>Chris Smith</strong> signed up");
    expect(html).toContain('<p class="display">Signed up for <em>pro</em></p>');
    expect(html).toContain("<dt>Plan</dt><dd>pro</dd>");
    expect(html).toContain('<dt><code>str:cm:coupon</code></dt><dd class="ignored">ignored: not defined in this account</dd>');
  });
});
