/**
 * Signed identity (Intercom's `user_hash` pattern). A page can claim to be anyone; only the
 * site's backend knows who is logged in. With IDENTITY_SECRET set, the backend signs the
 * visitor's email (or external id, or Ortto person id) and the page passes that token along:
 * `hex(HMAC-SHA256(IDENTITY_SECRET, value))`, value = the email trimmed and lower-cased, or the
 * external id / person id as given.
 */
import type { ActivityInput } from "../shared/activities.ts";

/** The value a token signs for one activity's person, or undefined when it has none we can verify. */
export function identityValue(activity: ActivityInput): string | undefined {
  const email = activity.fields?.["str::email"];
  if (typeof email === "string") return email.trim().toLowerCase();
  const externalId = activity.fields?.["str::ei"];
  if (typeof externalId === "string") return externalId;
  return activity.person_id;
}

const keys = new Map<string, Promise<CryptoKey>>();
function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keys.set(secret, key);
  }
  return key;
}

function hexBytes(hex: string): Uint8Array | undefined {
  if (!/^[0-9a-f]{64}$/i.test(hex)) return undefined;
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

/** Signs a value as the site's backend would (used by tests and the README's examples). */
export async function signIdentity(secret: string, value: string): Promise<string> {
  const signature = await crypto.subtle.sign("HMAC", await hmacKey(secret), new TextEncoder().encode(value));
  return [...new Uint8Array(signature)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Checks that `token` signs the person of every activity. `crypto.subtle.verify` compares in
 * constant time, so the check leaks nothing about the expected token.
 * Returns the index of the first activity whose person the token does not prove.
 */
export async function verifyIdentity(
  secret: string,
  token: string | undefined,
  activities: ActivityInput[],
): Promise<{ index: number; reason: string } | undefined> {
  const signature = token ? hexBytes(token) : undefined;
  const key = await hmacKey(secret);
  const verified = new Map<string, boolean>();
  for (const [index, activity] of activities.entries()) {
    const value = identityValue(activity);
    if (value === undefined) return { index, reason: "expected str::email, str::ei or person_id: only these can be verified" };
    if (!signature) return { index, reason: token ? "identity_token must be 64 hex characters" : "identity_token is required" };
    if (!verified.has(value)) verified.set(value, await crypto.subtle.verify("HMAC", key, signature, new TextEncoder().encode(value)));
    if (!verified.get(value)) return { index, reason: "identity_token does not sign this person" };
  }
  return undefined;
}
