import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { digestHex } from "../../worker/hash.ts";

/** The first 16 bytes of Web Crypto's SHA-256 of a value's UTF-8, in hex: what the ledger's keys were before. */
const webCrypto = async (value: string) =>
  Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value))).subarray(0, 16), (b) =>
    b.toString(16).padStart(2, "0"),
  ).join("");

describe("the relay's SHA-256 in workerd", () => {
  it("gives Web Crypto's bytes for any string: lone surrogates, astral characters, NULs", async () => {
    const strings = fc.oneof(
      fc.string({ unit: "binary", maxLength: 300 }),
      fc.string({ unit: fc.constantFrom("\ud800", "\udc00", "a", "é", "😀", "\u0000", "\uffff"), maxLength: 200 }),
    );
    await fc.assert(
      fc.asyncProperty(strings, async (value) => {
        expect(digestHex(value)).toBe(await webCrypto(value));
      }),
      { numRuns: 2000 },
    );
  });

  it("gives Web Crypto's bytes across the block boundaries, and for a megabyte", async () => {
    for (const n of [0, 1, 18, 19, 27, 28, 55, 56, 63, 64, 119, 120, 1_000_000])
      for (const unit of ["a", "é", "😀", "\ud800"])
        expect([unit, n, digestHex(unit.repeat(n))]).toEqual([unit, n, await webCrypto(unit.repeat(n))]);
  });
});
