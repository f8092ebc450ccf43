/**
 * The relay's SHA-256 (worker/hash.ts), written in JavaScript for speed, must give Web Crypto's
 * bytes: the ledger's keys and members, and the contacts in the logs, are these hashes, and they
 * must stay the same across deployments.
 */
import { describe, expect, it } from "vitest";
import { digestHex, sha256Hex } from "../../worker/hash.ts";

const webCrypto = async (value: string) =>
  Buffer.from(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(value)))
    .toString("hex")
    .slice(0, 32);

describe("the relay's SHA-256", () => {
  it("gives Web Crypto's first 16 bytes for every length across the block boundaries", async () => {
    for (let n = 0; n <= 200; n++) {
      const value = "x".repeat(n);
      expect(digestHex(value), `${n} characters`).toBe(await webCrypto(value));
    }
  });

  it("gives Web Crypto's bytes for the values the relay hashes, non-ASCII and long ones included", async () => {
    const values = [
      "",
      "abc",
      "k1001|2026-12-06T10:00:00.000Z",
      "e:chris@example.com|act:cm:placed-order",
      "n:2001:db8:1234::/48",
      "e:zoë@exämple.com",
      "p:+61 400 000 000 — 電話 🙂",
      "lone \ud800 surrogate",
      "é".repeat(100),
      "🙂".repeat(300),
      "long ".repeat(2_000),
    ];
    for (const value of values) expect(digestHex(value), value.slice(0, 40)).toBe(await webCrypto(value));
  });

  it("answers a value hashed before with the same hex, shortened to the bytes asked for", async () => {
    const value = "e:returning@example.com";
    expect(sha256Hex(value)).toBe(await webCrypto(value));
    expect(sha256Hex(value, 6)).toBe((await webCrypto(value)).slice(0, 12));
  });
});
