const encoder = new TextEncoder();

/**
 * The first `bytes` bytes of a value's SHA-256, in hex (Web Crypto: native in workerd). Contacts
 * leave the isolate — to the ledger, to the logs — only as such hashes, and only after the answer
 * or on the rare request that waits for the ledger, so the hash is never on the common path.
 */
export async function sha256Hex(value: string, bytes = 16): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(value)));
  let hex = "";
  for (let i = 0; i < bytes; i++) hex += (digest[i] as number).toString(16).padStart(2, "0");
  return hex;
}
