/**
 * The activity catalogue: edit this file to match the custom activities defined in your
 * Ortto account (Activities → New activity). Only what is listed here can pass the relay:
 * an unknown activity, attribute or person field is refused with a 400 that names it.
 *
 * Attribute kinds: text, long_text, integer, decimal, currency, date, datetime, boolean,
 * phone, url, email, single_select, multi_select, json, place. Decimals and currency are
 * sent as integers × 1000, as Ortto expects (24.99 → 24990).
 */
import { defineCatalogue } from "./shared/catalogue.ts";

export default defineCatalogue({
  activities: {
    // The example from Ortto's custom activities guide.
    "act:cm:logged-in": {
      name: "Logged in",
      attributes: {
        "str:cm:payment-plan": "text",
        "bol:cm:account-owner": "boolean",
        "str:cm:web-browser": "text",
        "int::v": "currency", // conversion value
      },
    },
    // A demo with one attribute of every kind Ortto offers.
    "act:cm:placed-order": {
      name: "Placed order",
      attributes: {
        "str:cm:order-number": "text",
        "txt:cm:gift-message": "long_text",
        "int:cm:item-count": "integer",
        "int:cm:weight-kg": "decimal",
        "int:cm:order-total": "currency",
        "dtz:cm:delivery-date": "date",
        "tme:cm:placed-at": "datetime",
        "bol:cm:first-order": "boolean",
        "phn:cm:contact-phone": "phone",
        "str:cm:receipt-url": "url",
        "str:cm:shipping-method": { kind: "single_select", options: ["standard", "express", "pickup"] },
        "sst:cm:categories": "multi_select",
        "obj:cm:items": "json",
        "int::v": "currency",
      },
    },
    // Sent by the snippet's automatic page views (data-pageviews="act:cm:viewed-page").
    "act:cm:viewed-page": {
      name: "Viewed page",
      attributes: {
        "str:cm:page-url": "url",
        "str:cm:page-title": "text",
        "str:cm:referrer": "text",
      },
    },
  },
  // Person fields a page may set. Consent fields (bol::p, str::s-ctx, str::u-ctx, bol::sp,
  // bol::gdpr) are deliberately absent: a page must not be able to unsubscribe someone.
  personFields: {
    "str::first": true,
    "str::last": true,
    "str::email": true,
    "str::ei": true,
    "phn::phone": true,
    "str:cm:company": "text",
  },
});
