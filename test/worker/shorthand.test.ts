/**
 * The snippet's short forms through the whole relay (worker/intake/shorthand.ts): what the
 * browser sends short, Ortto receives in its own shape.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { emulator, post } from "./helpers.ts";

beforeEach(async () => {
  await emulator.reset();
});

describe("the snippet's short forms, expanded at the edge", () => {
  it("writes a created sent in ms as Ortto's ISO string, the same for a re-send, which Ortto merges", async () => {
    const ms = Date.now() - 60_000;
    // As the snippet sends it: short activity id and person field, key and created (ms) fixed at the call.
    const body = { activities: [{ activity_id: "logged-in", key: "k-ms-1", created: ms, fields: { email: "ms@example.com" } }] };
    expect((await post(body)).status).toBe(200);
    expect((await post(body)).status).toBe(200);
    const sent = (await emulator.requests()).map((r) => r.body.activities?.[0]);
    expect(sent.map((a) => [a?.activity_id, a?.key, a?.created, a?.fields])).toEqual([
      ["act:cm:logged-in", "k-ms-1", new Date(ms).toISOString(), { "str::email": "ms@example.com" }],
      ["act:cm:logged-in", "k-ms-1", new Date(ms).toISOString(), { "str::email": "ms@example.com" }],
    ]);
    expect((await emulator.activities()).duplicates).toBe(1);
  });

  it("refuses a created in ms that is no date, or in the future, naming it (a 400, never a 500)", async () => {
    for (const created of [1e300, Date.now() + 3_600_000]) {
      const res = await post({ activities: [{ activity_id: "logged-in", key: "k", created, fields: { email: "ms@example.com" } }] });
      expect(res.status).toBe(400);
      const answer = (await res.json()) as { details: { path: string }[] };
      expect(answer.details.map((d) => d.path)).toContain("activities.0.created");
    }
    expect(await emulator.requests()).toEqual([]);
  });

  it("dates a page's events by the relay's clock from the device's t, whatever the device's clock says", async () => {
    // The device's clock is 2 h fast; it tracked an event 30 s before sending, and a re-send
    // (the same key and created, a later t) is dated the same, so Ortto merges it.
    const fast = 2 * 3_600_000;
    const created = Date.now() + fast - 30_000;
    for (let n = 0; n < 2; n++) {
      const body = {
        t: Date.now() + fast,
        activities: [{ activity_id: "logged-in", key: "k-t-1", created, fields: { email: "t@example.com" } }],
      };
      expect((await post(body)).status).toBe(200);
    }
    const sent = (await emulator.requests()).map((r) => r.body);
    expect(sent.every((b) => !("t" in b))).toBe(true);
    const dates = sent.map((b) => Date.parse(b.activities?.[0]?.created as string));
    expect(dates[0]).toBe(dates[1]);
    // Within a clock step (10 s) of the real time the event happened, 30 s ago: not 2 h ahead (which the relay would refuse).
    expect(Math.abs((dates[0] as number) - (Date.now() - 30_000))).toBeLessThanOrEqual(10_000);
    expect((await emulator.activities()).duplicates).toBe(1);
  });

  it("refuses a t that is not a date in ms, naming t (a 400, never a 500), and checks the corrected created", async () => {
    for (const t of ["now", -1, 1e300, null]) {
      const res = await post({
        t,
        activities: [{ activity_id: "logged-in", key: "k", created: Date.now(), fields: { email: "t@example.com" } }],
      });
      expect(res.status).toBe(400);
      const answer = (await res.json()) as { details: { path: string }[] };
      expect(answer.details.map((d) => d.path)).toEqual(["t"]);
    }
    // An event tracked 100 days before its request (by the device's clock): refused as too old, as the corrected created.
    const now = Date.now();
    const old = await post({
      t: now,
      activities: [{ activity_id: "logged-in", key: "k", created: now - 100 * 86_400_000, fields: { email: "t@example.com" } }],
    });
    expect(old.status).toBe(400);
    expect(((await old.json()) as { details: { path: string }[] }).details.map((d) => d.path)).toContain("activities.0.created");
    expect(await emulator.requests()).toEqual([]);
  });

  it("cuts the page-view attributes the snippet sends whole to Ortto's 255 characters", async () => {
    const url = `https://shop.example/${"p".repeat(400)}`;
    const res = await post({
      activities: [
        {
          activity_id: "viewed-page",
          fields: { email: "pv@example.com" },
          attributes: { "page-url": url, "page-title": "t".repeat(300), referrer: `https://www.google.com/?q=${"q".repeat(300)}` },
        },
      ],
    });
    expect(res.status).toBe(200);
    const [activity] = (await emulator.requests())[0]?.body.activities ?? [];
    expect(activity?.attributes).toEqual({
      "str:cm:page-url": url.slice(0, 255),
      "str:cm:page-title": "t".repeat(255),
      "str:cm:referrer": `https://www.google.com/?q=${"q".repeat(300)}`.slice(0, 255),
    });
  });

  it("forwards a page view as the snippet sends it (u, t, r), its 5,000-character referrer cut to 255", async () => {
    const referrer = `https://www.google.com/?q=${"q".repeat(4_977)}`;
    const res = await post({
      activities: [
        {
          activity_id: "viewed-page",
          fields: { email: "pv-r@example.com" },
          attributes: { u: "https://shop.example/", t: "Shop", r: referrer },
        },
      ],
    });
    expect(res.status).toBe(200);
    const [activity] = (await emulator.requests())[0]?.body.activities ?? [];
    expect(activity?.attributes).toEqual({
      "str:cm:page-url": "https://shop.example/",
      "str:cm:page-title": "Shop",
      "str:cm:referrer": referrer.slice(0, 255),
    });
  });

  it("refuses page views sent to an activity without the page-view attributes (a data-pageviews that names another), naming u, t and r as sent", async () => {
    const res = await post({
      activities: [
        {
          activity_id: "logged-in",
          fields: { email: "pv-wrong@example.com" },
          attributes: { u: "https://shop.example/", t: "Shop", r: "" },
        },
      ],
    });
    const body = (await res.json()) as { details: { path: string; message: string }[] };
    expect({ status: res.status, details: body.details }).toEqual({
      status: 400,
      details: [
        { path: "activities.0.attributes.u", message: "unknown attributes u, t, r: not declared in the catalogue for this activity" },
      ],
    });
    expect(await emulator.requests()).toEqual([]);
  });

  it("still refuses an Ortto id's text over 255 characters (only the snippet's short forms are cut)", async () => {
    const res = await post({
      activities: [
        { activity_id: "viewed-page", fields: { email: "pv@example.com" }, attributes: { "str:cm:page-title": "t".repeat(300) } },
      ],
    });
    expect(res.status).toBe(400);
    expect(await emulator.requests()).toEqual([]);
  });

  it("never leaves half of a surrogate pair at the end of a cut page-view attribute", async () => {
    // The 255th UTF-16 unit is the first half of an emoji: a cut there would send Ortto a lone surrogate.
    const title = `${"a".repeat(254)}😀 and more`;
    const res = await post({
      activities: [{ activity_id: "viewed-page", fields: { email: "pv-emoji@example.com" }, attributes: { "page-title": title } }],
    });
    expect(res.status).toBe(200);
    const [activity] = (await emulator.requests())[0]?.body.activities ?? [];
    const cut = activity?.attributes?.["str:cm:page-title"] as string;
    expect(cut).toBe("a".repeat(254));
    expect(cut).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])/);
  });

  it("forwards a page's created as sent when its request took 20 s to arrive (within a minute: time in transit, not a wrong clock)", async () => {
    const created = Date.now() - 25_000;
    const res = await post({
      t: Date.now() - 20_000,
      activities: [{ activity_id: "logged-in", key: "k-transit", created, fields: { email: "transit@example.com" } }],
    });
    expect(res.status).toBe(200);
    const [activity] = (await emulator.requests())[0]?.body.activities ?? [];
    expect(activity?.created).toBe(new Date(created).toISOString());
  });

  it("takes a page's created and t in fractions of a ms (its monotonic clock) and forwards created rounded to the ms", async () => {
    const at = Date.now() - 60_000.25;
    const res = await post({
      t: Date.now() - 0.75,
      activities: [{ activity_id: "logged-in", key: "k-page-frac", created: at, fields: { email: "page-frac@example.com" } }],
    });
    expect(res.status).toBe(200);
    const [activity] = (await emulator.requests())[0]?.body.activities ?? [];
    expect(activity?.created).toBe(new Date(Math.round(at)).toISOString());
  });

  it("refuses a created in ms that is not an integer without a page's t, naming it, rather than truncating it", async () => {
    // Never what the snippet sends; truncated, two different values would become one `created`.
    const ms = Date.now() - 60_000 + 0.5;
    const res = await post({
      activities: [{ activity_id: "logged-in", key: "k-frac", created: ms, fields: { email: "frac@example.com" } }],
    });
    expect(res.status).toBe(400);
    const answer = (await res.json()) as { details: { path: string }[] };
    expect(answer.details.map((d) => d.path)).toContain("activities.0.created");
    expect(await emulator.requests()).toEqual([]);
  });

  it("refuses odd created values (out of range, negative, too old, a numeric string) with a 400 naming created", async () => {
    for (const created of [
      -1,
      0,
      8.64e15,
      -8.64e15,
      8.64e15 + 1,
      1e21,
      Number.MAX_SAFE_INTEGER,
      `${Date.now()}`,
      Date.now() - 91 * 86_400_000,
    ]) {
      const res = await post({ activities: [{ activity_id: "logged-in", key: "k-odd", created, fields: { email: "odd@example.com" } }] });
      expect([created, res.status]).toEqual([created, 400]);
      const answer = (await res.json()) as { details: { path: string; message: string }[] };
      expect(answer.details.map((d) => d.path)).toContain("activities.0.created");
    }
    expect(await emulator.requests()).toEqual([]);
  });
});
