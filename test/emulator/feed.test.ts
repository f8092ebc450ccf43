import { beforeEach, describe, expect, it } from "vitest";
import { call, createJson, daysAgo, loggedIn, resetEmulator } from "./helpers.ts";

beforeEach(async () => {
  await resetEmulator();
});

async function feed(): Promise<string> {
  const res = await call("/");
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/text\/html/);
  return res.text();
}

describe("GET / (the activity feed)", () => {
  it("answers 200 with an empty feed", async () => {
    const html = await feed();
    expect(html).toContain("No activities yet");
    expect(html).toContain("0 people · 0 activities · 0 duplicates merged · 0 create requests");
  });

  it("words each activity as Ortto's feed does, newest first", async () => {
    await createJson({ activities: [loggedIn()] });
    await createJson({
      activities: [
        { activity_id: "act:cm:viewed-page", fields: { "str::email": "alex@example.com" }, attributes: { "str:cm:page-title": "Pricing" } },
      ],
    });
    const html = await feed();
    expect(html).toContain("<strong>Chris Smith</strong> logged in");
    // Without a name the feed falls back to the email.
    expect(html).toContain("<strong>alex@example.com</strong> viewed page");
    expect(html.indexOf("viewed page")).toBeLessThan(html.indexOf("logged in"));
    expect(html).toContain("2 people · 2 activities · 0 duplicates merged · 2 create requests");
  });

  it("shows decimals and currency divided by 1000, dates readably, the key and the location", async () => {
    await createJson({
      activities: [
        {
          activity_id: "act:cm:placed-order",
          key: "order-1001",
          created: daysAgo(1),
          fields: { "str::first": "Chris", "str::email": "chris@example.com" },
          attributes: {
            "int:cm:weight-kg": 64280,
            "int:cm:order-total": 24990,
            "dtz:cm:delivery-date": { year: 2026, month: 3, day: 4, timezone: "Australia/Sydney" },
            "bol:cm:first-order": true,
          },
          location: { custom: { city_name: "New York", region_name: "NY", country_name: "USA" } },
        },
      ],
    });
    const html = await feed();
    expect(html).toContain("<strong>Chris</strong> placed order");
    expect(html).toContain("<dt>Weight kg</dt><dd>64.28</dd>");
    expect(html).toContain("<dt>Order total</dt><dd>24.99</dd>");
    expect(html).toContain("<dt>Delivery date</dt><dd>4 Mar 2026 (Australia/Sydney)</dd>");
    expect(html).toContain("<dt>First order</dt><dd>yes</dd>");
    expect(html).toContain("key <code>order-1001</code>");
    expect(html).toContain("from New York, NY, USA");
  });

  it("shows the conversion value and the source IP", async () => {
    await createJson({ activities: [loggedIn()] });
    const html = await feed();
    expect(html).toContain("<dt>Conversion value</dt><dd>1.53</dd>");
    expect(html).toContain("from IP 203.0.113.7");
  });

  it("renders the activity's display template from the catalogue, as Ortto's custom display does", async () => {
    await createJson({
      activities: [
        {
          activity_id: "act:cm:placed-order",
          fields: { "str::first": "Chris", "str::email": "chris@example.com" },
          attributes: { "str:cm:order-number": "A-1001", "int:cm:item-count": 2, "int:cm:order-total": 24990 },
        },
      ],
    });
    const html = await feed();
    expect(html).toContain('<p class="display">Order number <em>A-1001</em> placed, <em>2</em> items for <em>24.99</em></p>');
  });

  it("leaves a template's attribute the activity did not carry empty, and escapes what it shows", async () => {
    await createJson({ activities: [loggedIn({ attributes: { "str:cm:payment-plan": "<b>gold</b> & co" } })] });
    const html = await feed();
    expect(html).toContain('<p class="display">Logged in on the <em>&lt;b&gt;gold&lt;/b&gt; &amp; co</em> with </p>');
  });

  it("escapes every value it shows", async () => {
    await createJson({
      activities: [
        loggedIn({
          key: `"><img src=x onerror=alert(1)>`,
          fields: { "str::first": "<script>alert(1)</script>", "str::last": "O'Brien & Co", "str::email": "chris@example.com" },
          attributes: { "str:cm:payment-plan": "<b>gold</b>" },
          location: { source_ip: "<i>ip</i>" },
        }),
      ],
    });
    const html = await feed();
    expect(html).not.toContain("<script>alert");
    expect(html).not.toContain("<img");
    expect(html).not.toContain("<b>gold");
    expect(html).not.toContain("<i>ip");
    expect(html).toContain("&lt;script&gt;alert(1)&lt;/script&gt; O&#39;Brien &amp; Co</strong> logged in");
    expect(html).toContain("&lt;b&gt;gold&lt;/b&gt;");
    expect(html).toContain("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;");
  });
});
