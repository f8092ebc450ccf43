/** Requests to the emulator under test, and the seed guide's example activity. */
import { exports } from "cloudflare:workers";
import type { Person, StoredActivity } from "../../emulator/store.ts";
import type { ActivityResult } from "../../shared/index.ts";

/** Either Ortto's success body or its error envelope (or its 429 body, whose error is an object). */
export interface Answer {
  activities?: ActivityResult[];
  request_id?: string;
  code?: number;
  error?: unknown;
  details?: { status: string; error: string }[];
}

export const KEY = "test-key-emulator";
export const JSON_HEADERS = { "X-Api-Key": KEY, "Content-Type": "application/json" };

export function call(path: string, init?: RequestInit): Promise<Response> {
  return exports.default.fetch(`http://emulator${path}`, init);
}

export function create(body: unknown, headers: Record<string, string> = JSON_HEADERS): Promise<Response> {
  return call("/v1/activities/create", { method: "POST", headers, body: typeof body === "string" ? body : JSON.stringify(body) });
}

export async function createJson(body: unknown): Promise<{ status: number; body: Answer }> {
  const res = await create(body);
  return { status: res.status, body: await res.json() };
}

export async function stored(): Promise<{ activities: StoredActivity[]; requests: number; duplicates: number; people: Person[] }> {
  return (await call("/_emulator/activities")).json();
}

export function setFaults(faults: Record<string, unknown>): Promise<Response> {
  return call("/_emulator/faults", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(faults) });
}

export function resetEmulator(): Promise<Response> {
  return call("/_emulator/reset", { method: "POST" });
}

import { loggedIn as seedLoggedIn } from "../fixtures/seed.ts";

/** The seed's example, as a server would send it straight to Ortto: with a location. */
export const loggedIn = (overrides: Record<string, unknown> = {}) => seedLoggedIn({ location: { source_ip: "203.0.113.7" }, ...overrides });

export const daysAgo = (days: number) => new Date(Date.now() - days * 24 * 60 * 60 * 1000).toISOString();
export const HEX24 = /^[0-9a-f]{24}$/;
