/**
 * The benchmarks' event: a placed-order activity of the catalogue with one attribute of every
 * kind, as a shop sends it. `key` makes each one distinct (the relay de-duplicates by key).
 */
export const placedOrder = (email, key) => ({
  activity_id: "act:cm:placed-order",
  created: new Date().toISOString(),
  key,
  fields: { "str::first": "Chris", "str::last": "Smith", "str::email": email },
  attributes: {
    "str:cm:order-number": "A-1001",
    "int:cm:order-total": 24990,
    "dtz:cm:delivery-date": { year: 2026, month: 12, day: 24, timezone: "Australia/Sydney" },
    "tme:cm:placed-at": new Date().toISOString(),
    "bol:cm:first-order": true,
    "str:cm:receipt-url": "https://shop.example/r/1001",
    "sst:cm:categories": ["desks", "chairs"],
    "obj:cm:items": [{ item_id: "12345", item_name: "Laminate desk", price: 1000 }],
    "int::v": 24990,
  },
});
