/**
 * Signed identity (Intercom's `user_hash` pattern). A page can claim to be anyone; only the
 * site's backend knows who is logged in. With IDENTITY_SECRET set, the backend signs the
 * visitor's identifier of the one kind the operator names in IDENTITY_FIELD (the email by
 * default, or the external id, or the Ortto person id) and the page passes that token along:
 * `hex(HMAC-SHA256(IDENTITY_SECRET, value))`, value normalised as `identifiers.ts` does (the
 * email trimmed and lower-cased, the external id trimmed, the person id lower-cased).
 */
import type { ActivityInput } from "../shared/activities.ts";
import { type IdentifierKind, identifiersOf } from "./identifiers.ts";

/** The kinds of identifier a site may sign (IDENTITY_FIELD); a phone number cannot be. */
export const SIGNABLE_KINDS = ["str::email", "str::ei", "person_id"] as const;
export type SignableKind = (typeof SIGNABLE_KINDS)[number];

/** Where an identifier sits in an activity, for the path an error names. */
const pathOf = (kind: IdentifierKind) => (kind === "person_id" ? "person_id" : `fields.${kind}`);

/**
 * The one identifier of an activity and the value a token signs for it. Refused when the
 * activity carries no identifier or more than one (a token proves one value, and Ortto might
 * merge by an unproven other one, such as a victim's phone or external id next to the forger's
 * own email), or one of another kind than the site signs: a token for the username
 * `victim@example.com` must not pass as that email.
 */
export function identityValue(
  activity: ActivityInput,
  kind: SignableKind,
): { field: IdentifierKind; value: string } | { field?: undefined; path?: string; reason: string } {
  const present = identifiersOf(activity);
  const [only] = present;
  if (!only || present.length > 1) {
    return {
      reason: `expected exactly one of str::email, str::ei, person_id or phn::phone when identities are signed, the signed ${kind} (found ${present.map((i) => i.kind).join(", ") || "none"})`,
    };
  }
  if (only.kind === "phn::phone") return { path: pathOf(only.kind), reason: `a phone number cannot be signed: identify by ${kind}` };
  if (only.kind !== kind) {
    return { path: pathOf(only.kind), reason: `identities are signed as ${kind} (IDENTITY_FIELD): identify by ${kind}, not ${only.kind}` };
  }
  return { field: only.kind, value: only.value };
}

const keys = new Map<string, Promise<CryptoKey>>();
/** An HMAC-SHA256 signature in hex, as an identity_token carries it. */
const HEX_SIGNATURE = /^[0-9a-f]{64}$/i;

/**
 * Pairs (secret, value, token) this isolate has verified: a visitor sends many requests with one
 * token, and each after the first costs a lookup, not an HMAC. Only successes are kept (a wrong
 * token is checked every time), and a lookup hashes the whole string, so its time says nothing
 * about how close a guessed token is. Bounded: cleared when full.
 */
const proven = new Set<string>();
const MAX_PROVEN = 10_000;
const provenKey = (secret: string, value: string, token: string) => `${secret.length}:${secret}\n${value}\n${token.toLowerCase()}`;
function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keys.set(secret, key);
  }
  return key;
}

function hexBytes(hex: string): Uint8Array {
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
 * Returns where the first activity that the token does not prove fails, and why.
 */
export async function verifyIdentity(
  secret: string,
  token: string | undefined,
  request: { merge_by?: string[]; activities: ActivityInput[] },
  kind: SignableKind = "str::email",
): Promise<{ path: string; reason: string } | undefined> {
  // With one signed identifier per activity there is nothing to choose between; a page-chosen
  // merge order could only point the activity at someone else.
  if (request.merge_by) return { path: "merge_by", reason: "merge_by is not accepted when identities are signed" };
  // Its bytes and the key are needed only for a person this isolate has not proven yet.
  const wellFormed = token !== undefined && HEX_SIGNATURE.test(token);
  const verified = new Map<string, boolean>();
  for (const [index, activity] of request.activities.entries()) {
    const identity = identityValue(activity, kind);
    if (identity.field === undefined)
      return { path: `activities.${index}${identity.path ? `.${identity.path}` : ""}`, reason: identity.reason };
    if (!wellFormed)
      return {
        path: token ? "identity_token" : `activities.${index}`,
        reason: token ? "identity_token must be 64 hex characters" : "identity_token is required",
      };
    const { value } = identity;
    if (!verified.has(value)) {
      const memo = provenKey(secret, value, token as string);
      let ok = proven.has(memo);
      if (!ok) {
        ok = await crypto.subtle.verify("HMAC", await hmacKey(secret), hexBytes(token as string), new TextEncoder().encode(value));
        if (ok) {
          if (proven.size >= MAX_PROVEN) proven.clear();
          proven.add(memo);
        }
      }
      verified.set(value, ok);
    }
    if (!verified.get(value)) return { path: "identity_token", reason: "identity_token does not sign this person" };
  }
  return undefined;
}
