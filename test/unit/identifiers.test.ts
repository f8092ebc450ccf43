/**
 * The contact keys the limits build for every event (worker/identifiers.ts `contactKeysOf`), held
 * to the identifiers every other part of the relay reads: the same keys, in the same order.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ActivityInput } from "../../shared/activities.ts";
import { contactKey, contactKeysOf, identifiersOf } from "../../worker/identifiers.ts";

const text = fc.oneof(fc.constantFrom("", " ", "Chris@Example.com ", " x-1 ", "ABC123"), fc.string({ maxLength: 12 }));
const phone = fc.record({ c: fc.oneof(fc.constant(undefined), fc.constantFrom("61", "+1")), n: fc.oneof(text, fc.constant(undefined)) });

describe("an activity's contact keys", () => {
  it("are the keys of its identifiers, normalised, in the order of their kinds (property)", () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            person_id: fc.oneof(text, fc.constant(undefined)),
            fields: fc.record(
              { "str::email": fc.oneof(text, fc.integer()), "str::ei": text, "phn::phone": fc.oneof(phone, text) },
              { requiredKeys: [] },
            ),
          },
          { requiredKeys: [] },
        ),
        (parts) => {
          const activity = { activity_id: "act:cm:placed-order", ...parts } as ActivityInput;
          expect(contactKeysOf(activity)).toEqual(identifiersOf(activity).map(contactKey));
        },
      ),
      { numRuns: 500 },
    );
  });

  it("name a person by email as its trimmed, lower-cased address", () => {
    const activity = { activity_id: "act:cm:placed-order", fields: { "str::email": " Chris@Example.com " } } as ActivityInput;
    expect(contactKeysOf(activity)).toEqual(["e:chris@example.com"]);
  });
});
