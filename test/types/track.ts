/**
 * Type tests of the generated typings (snippet/dist/relay.d.ts, from relay.config.ts): compiled by
 * `npm run typecheck`, never run. Each `@ts-expect-error` line must be an error, or tsc fails on
 * the unused directive; every other line must compile.
 */
import { createRelay } from "../../snippet/dist/relay.mjs";

const relay = createRelay({ endpoint: "https://relay.example" });

// Friendly names, with the values the relay converts.
relay("track", "placed-order", {
  orderNumber: "A-1001",
  orderTotal: 24.99,
  weightKg: 1.25,
  deliveryDate: "2026-12-24",
  placedAt: Date.now(),
  contactPhone: "+61 401 234 567",
  shippingMethod: "express",
  categories: ["desks"],
  items: [{ item_id: "12345", item_name: "Laminate desk", price: 1000 }],
  conversionValue: 24.99,
});
// The escape hatch: Ortto's ids and Ortto's values, by slug or by activity id.
relay("track", "act:cm:placed-order", {
  "int:cm:order-total": 24990,
  "dtz:cm:delivery-date": { year: 2026, month: 12, day: 24, timezone: "Australia/Sydney" },
});
relay("track", "logged-in", { paymentPlan: "$100 starter plan", accountOwner: true, conversionValue: 15.3 });
relay("track", "logged-in");
// A required attribute, either way.
relay("track", "started-trial", { plan: "pro", trialEnds: "2026-12-24" });
relay("track", "act:cm:started-trial", { "str:cm:plan": "starter" });

// @ts-expect-error an activity the catalogue does not have
relay("track", "placed-ordr", { orderTotal: 24.99 });
// @ts-expect-error any string is not an activity
relay("track", String("placed-order"));
// @ts-expect-error a misspelt attribute
relay("track", "placed-order", { orderTotl: 24.99 });
// @ts-expect-error the wrong kind: currency is a number
relay("track", "placed-order", { orderTotal: "24.99" });
// @ts-expect-error the wrong kind: Ortto's date is an object under its id
relay("track", "placed-order", { "dtz:cm:delivery-date": "2026-12-24" });
// @ts-expect-error an option the select does not have
relay("track", "placed-order", { shippingMethod: "drone" });
// @ts-expect-error the required plan is missing
relay("track", "started-trial", { trialEnds: "2026-12-24" });
// @ts-expect-error started-trial requires attributes
relay("track", "started-trial");
// @ts-expect-error the relay fills the browser: a page cannot send it
relay("track", "logged-in", { webBrowser: "Netscape Navigator" });
// @ts-expect-error nor by its id
relay("track", "logged-in", { "str:cm:web-browser": "Netscape Navigator" });
// @ts-expect-error an attribute of another activity
relay("track", "logged-in", { orderTotal: 24.99 });

// Person fields, by friendly name or id.
relay("identify", { email: "chris@example.com", first: "Chris", company: "Vandalay Industries", phone: "+61401234567" }, { token: "t" });
relay("identify", { "str::email": "chris@example.com", "str:cm:company": "Vandalay Industries" });
// @ts-expect-error a person field the catalogue does not let a page set
relay("identify", { email: "chris@example.com", birthday: "1990-01-01" });
// @ts-expect-error the wrong kind
relay("identify", { email: 42 });

// The script tag's global is typed the same way.
window.relay("track", "placed-order", { orderTotal: 24.99 });
// @ts-expect-error
window.relay("track", "placed-order", { orderTotal: "24.99" });
relay("consent", true);
relay("reset");
