const encoder = new TextEncoder();

/**
 * The hashes this isolate has computed (as promises, so concurrent requests share one digest):
 * a returning visitor's contact is hashed for the log line and the ledger once, not on every
 * request. Bounded: cleared when full.
 */
const hashed = new Map<string, Promise<string>>();
const MAX_HASHED = 10_000;
const MEMO_BYTES = 16;

/** Each byte's two hex digits. */
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/**
 * The first 16 bytes of each value's SHA-256, in hex, not remembered: for values hashed once (an
 * event's id on its way to the ledger), which would only push the contacts out of the memo. All
 * digests are asked for at once, and one await serves them all.
 */
export async function digestsHex(values: string[]): Promise<string[]> {
  const digests = await Promise.all(values.map((value) => crypto.subtle.digest("SHA-256", encoder.encode(value))));
  return digests.map((buffer) => {
    const digest = new Uint8Array(buffer, 0, MEMO_BYTES) as Uint8Array & { toHex?: () => string };
    // Native in workerd (V8's Uint8Array.prototype.toHex); the table where it is missing (Node 20).
    if (digest.toHex) return digest.toHex();
    let hex = "";
    for (let i = 0; i < MEMO_BYTES; i++) hex += HEX[digest[i] as number];
    return hex;
  });
}

/**
 * The first `bytes` (at most 16) bytes of a value's SHA-256, in hex (Web Crypto: native in
 * workerd). Contacts leave the isolate — to the ledger, to the logs — only as such hashes, and
 * only after the answer or on the rare request that waits for the ledger, so the hash is never on
 * the common path.
 */
export async function sha256Hex(value: string, bytes: number = MEMO_BYTES): Promise<string> {
  let hex = hashed.get(value);
  if (!hex) {
    if (hashed.size >= MAX_HASHED) hashed.clear();
    hex = digestsHex([value]).then(([h]) => h as string);
    hashed.set(value, hex);
  }
  return bytes === MEMO_BYTES ? hex : (await hex).slice(0, bytes * 2);
}
