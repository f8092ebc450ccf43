import { sha256 } from "@noble/hashes/sha2.js";

const encoder = new TextEncoder();

/**
 * The first `bytes` bytes of a value's SHA-256, in hex. Synchronous (noble's audited pure-JS
 * SHA-256: ~1–2 µs for a short string, and no promise per value, where Web Crypto's digest is
 * async). Contacts leave the isolate — to the ledger, to the logs — only as such hashes.
 */
export function sha256Hex(value: string, bytes = 16): string {
  const digest = sha256(encoder.encode(value));
  let hex = "";
  for (let i = 0; i < bytes; i++) hex += (digest[i] as number).toString(16).padStart(2, "0");
  return hex;
}
