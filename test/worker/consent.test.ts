import { beforeEach, describe, expect, it, vi } from "vitest";
import { signIdentity } from "../../worker/identity.ts";
import { emulator, loggedIn, postWith } from "./helpers.ts";

// This file's catalogue lets pages set the email permission, as an operator may choose to.
vi.mock("../../relay.config.ts", async (importOriginal) =>
  (await import("./catalogue-mock.ts")).catalogueWith(importOriginal, {
    personFields: { "str::first": true, "str::email": true, "bol::p": true, "str::u-ctx": true },
    allowConsentFields: true,
  }),
);

const SECRET = "consent-test-secret";
const unsubscribe = (email: string) =>
  loggedIn({ fields: { "str::email": email, "bol::p": false, "str::u-ctx": "Unsubscribed from the preferences page" } });

beforeEach(async () => {
  await emulator.reset();
});

describe("consent fields allowed by the catalogue", () => {
  it("are refused with 403 in open mode, where no identity is verified", async () => {
    const res = await postWith({}, { activities: [unsubscribe("victim@example.com")] });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ details: [{ path: "activities.0.fields.bol::p" }] });
    expect(await emulator.requests()).toHaveLength(0);
  });

  it("reach Ortto for the verified person when identities are signed", async () => {
    const token = await signIdentity(SECRET, "chris@example.com");
    const res = await postWith({ IDENTITY_SECRET: SECRET }, { identity_token: token, activities: [unsubscribe("chris@example.com")] });
    expect(res.status).toBe(200);
    expect((await emulator.requests())[0]?.body.activities?.[0]?.fields).toMatchObject({ "bol::p": false });
  });

  it("are refused for anyone else even with a valid token of one's own", async () => {
    const token = await signIdentity(SECRET, "forger@example.com");
    const res = await postWith({ IDENTITY_SECRET: SECRET }, { identity_token: token, activities: [unsubscribe("victim@example.com")] });
    expect(res.status).toBe(401);
    expect(await emulator.requests()).toHaveLength(0);
  });
});
