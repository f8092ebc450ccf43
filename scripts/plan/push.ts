/**
 * `npm run plan -- push`'s engine: reads the account, works out the requests that make it hold the
 * catalogue (creating what is missing, modifying what changed, never deleting), and sends them
 * paced under the account's request budget. No Node API here: the relay's tests push the plan to
 * the emulator from inside workerd with the same code (test/fixtures/account.ts).
 */
import type { ResolvedCatalogue } from "../../shared/catalogue.ts";
import {
  type AccountState,
  type ActivityBody,
  type AttributeBody,
  activityBody,
  bodyHash,
  type Change,
  type CustomFieldBody,
  customFieldBody,
  customPersonFields,
  DISPLAY_TYPES,
  diffLocks,
  fieldIdFor,
  idProblems,
  isDisplayType,
  KIND_OF_DISPLAY_TYPE,
  type Lock,
  type LockedField,
  limitProblems,
  lockOf,
  lockOfAccount,
} from "../../shared/definitions.ts";

/** One request to Ortto. */
export interface PlannedRequest {
  method: "POST" | "PUT";
  path: string;
  body: unknown;
  /** Why: `create act:cm:logged-in`, `modify …`. */
  reason: string;
  /** The activity it defines, for a create or modify of one. */
  activity?: string;
}

export interface Answer {
  status: number;
  body: unknown;
}

/** Sends one request to the account; the client (below) paces and retries. */
export type Send = (method: "POST" | "PUT", path: string, body: unknown) => Promise<Answer>;

export interface ClientOptions {
  base: string;
  key: string;
  /** Requests a second this client may spend. */
  rps: number;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  /** How many 429s in a row it waits out before giving up. */
  maxRetries?: number;
  /** The longest `try-in-seconds` it waits out (default 60); a longer one is answered as the 429 it is. */
  maxWaitSeconds?: number;
  /** How long it waits for an answer before giving up on the request (default 30 s). */
  timeoutMs?: number;
  log?: (line: string) => void;
}

/**
 * Ortto's API with the account's budget kept: one request every 1/rps seconds, and a 429 waited out
 * for its `try-in-seconds` (Ortto's 429 body: `{"error":{"code":"rate-limit","try-in-seconds":10}}`),
 * at most `maxRetries` times and never longer than `maxWaitSeconds`, so a CI step cannot sleep for
 * hours. A request unanswered after `timeoutMs` throws (AbortSignal.timeout): push names it and stops.
 */
export function orttoClient(options: ClientOptions): Send {
  const { base, key, rps } = options;
  const doFetch = options.fetch ?? fetch;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = options.now ?? Date.now;
  const interval = 1000 / Math.max(rps, 0.1);
  let next = 0;
  return async (method, path, body) => {
    for (let attempt = 0; ; attempt++) {
      const wait = next - now();
      if (wait > 0) await sleep(wait);
      next = Math.max(now(), next) + interval;
      const timeoutMs = options.timeoutMs ?? 30_000;
      let res: Response;
      let text: string;
      try {
        res = await doFetch(`${base}${path}`, {
          method,
          headers: { "X-Api-Key": key, "Content-Type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(timeoutMs),
        });
        text = await res.text();
      } catch (err) {
        const name = (err as Error)?.name;
        const why = name === "TimeoutError" || name === "AbortError" ? `no answer in ${timeoutMs / 1000} s` : (err as Error)?.message;
        throw new Error(`${method} ${path}: ${why}`);
      }
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {}
      if (res.status !== 429 || attempt >= (options.maxRetries ?? 5)) return { status: res.status, body: parsed };
      const seconds = Number((parsed as { error?: { "try-in-seconds"?: unknown } })?.error?.["try-in-seconds"]);
      const delay = (Number.isFinite(seconds) && seconds >= 0 ? seconds : 10) * 1000;
      if (delay > (options.maxWaitSeconds ?? 60) * 1000) return { status: res.status, body: parsed };
      options.log?.(`429 rate limit on ${path}: waiting ${delay / 1000} s (try-in-seconds)`);
      await sleep(delay);
      next = now() + interval;
    }
  };
}

/** What an error answer says, in one line. */
export function answerText(answer: Answer): string {
  const b = answer.body as { error?: unknown } | string;
  const error = typeof b === "object" && b !== null ? b.error : b;
  return `${answer.status}${error ? `: ${typeof error === "string" ? error : JSON.stringify(error)}` : ""}`;
}

/**
 * An answer that says the account cannot be used at all (a refused key, a spent budget, a server
 * error), as opposed to one that only says it cannot be read this way: push and diff stop on it
 * rather than take an unreadable account for an empty or unchanged one.
 */
export function accountRefusal(path: string, answer: Answer): string | undefined {
  const { status } = answer;
  if (status === 401 || status === 403) return `${path}: the key was refused (${answerText(answer)}); check ORTTO_API_KEY and the region`;
  if (status === 429) return `${path}: the account's request budget is spent (${answerText(answer)}); try again later`;
  if (status >= 500) return `${path}: Ortto failed (${answerText(answer)}); nothing was compared`;
  return undefined;
}

/** The account's activity definitions, if it can be read (see emulator/account.ts: Ortto documents no read endpoint). */
async function readActivities(send: Send): Promise<Record<string, ActivityBody> | undefined> {
  const answer = await send("POST", "/v1/instance-schema/get", { namespaces: ["cm"] });
  const refused = accountRefusal("/v1/instance-schema/get", answer);
  if (refused) throw new Error(refused);
  const list = (answer.body as { activities?: unknown })?.activities;
  if (answer.status !== 200 || !Array.isArray(list)) return undefined;
  const activities: Record<string, ActivityBody> = {};
  for (const d of list as (ActivityBody & { activity_field_id?: unknown })[]) {
    if (typeof d?.activity_field_id !== "string" || !Array.isArray(d.attributes)) return undefined;
    if (!d.attributes.every((a) => isDisplayType(a?.display_type) && typeof a.name === "string")) return undefined;
    const { activity_field_id, ...rest } = d;
    const { state: _, ...body } = rest as ActivityBody & { state?: unknown };
    activities[activity_field_id] = {
      ...body,
      attributes: d.attributes.map(({ name, display_type, field_id }) => ({ name, display_type, field_id: field_id ?? "" })),
    };
  }
  return activities;
}

/** The account's custom person fields (`POST /v1/person/custom-field/get`, documented), if it answers. */
async function readFields(send: Send): Promise<Record<string, LockedField> | undefined> {
  const answer = await send("POST", "/v1/person/custom-field/get", {});
  const refused = accountRefusal("/v1/person/custom-field/get", answer);
  if (refused) throw new Error(refused);
  const list = (answer.body as { fields?: unknown })?.fields;
  if (answer.status !== 200 || !Array.isArray(list)) return undefined;
  const fields: Record<string, LockedField> = {};
  for (const entry of list as { field?: { id?: unknown; name?: unknown; display_type?: unknown } }[]) {
    const f = entry?.field;
    if (typeof f?.id !== "string") continue;
    const kind = isDisplayType(f.display_type) ? KIND_OF_DISPLAY_TYPE[f.display_type] : "text";
    fields[f.id] = { name: typeof f.name === "string" ? f.name : f.id, kind };
  }
  return fields;
}

/** Reads what the account can tell: its activity definitions (where readable) and custom person fields. */
export async function readAccount(send: Send): Promise<AccountState> {
  const [activities, personFields] = [await readActivities(send), await readFields(send)];
  return { ...(activities && { activities }), ...(personFields && { personFields }) };
}

export interface PushPlan {
  /** Problems that stop everything: ids Ortto would not generate, Ortto's limits. */
  problems: string[];
  /** Breaking changes against the lock and the account. */
  breaking: Change[];
  requests: PlannedRequest[];
  /** Kept because push never deletes: attributes the account (or the last push) has and the catalogue dropped. */
  kept: string[];
  /** Where the activities were compared: `account` or `lock` (the account's could not be read). */
  comparedWith: "account" | "lock";
}

/** Attributes the baseline has that the body lacks, added back: push never removes an attribute. */
function keepAttributes(body: ActivityBody, baseline: AttributeBody[], id: string, kept: string[]): ActivityBody {
  const have = new Set(body.attributes.map((a) => fieldIdFor(KIND_OF_DISPLAY_TYPE[a.display_type], a.name)));
  const extra = baseline.filter((a) => !have.has(fieldIdFor(KIND_OF_DISPLAY_TYPE[a.display_type], a.name)));
  for (const a of extra) kept.push(`${id} ${fieldIdFor(KIND_OF_DISPLAY_TYPE[a.display_type], a.name)}`);
  return extra.length ? { ...body, attributes: [...body.attributes, ...extra] } : body;
}

/**
 * The requests that bring the account to the catalogue. Each activity is created when neither the
 * account nor the lock has it, modified when its definition differs (by the account's, else by the
 * lock's hash), and left alone otherwise: a second push sends nothing.
 */
export function planPush(catalogue: ResolvedCatalogue, lock: Lock | undefined, account: AccountState): PushPlan {
  const problems = [...idProblems(catalogue), ...limitProblems(catalogue, Object.keys(account.personFields ?? {}))];
  const wanted = lockOf(catalogue);
  const breaking = [...(lock ? diffLocks(wanted, lock, "lock") : []), ...diffLocks(wanted, lockOfAccount(account), "account")].filter(
    (c) => c.level === "breaking",
  );
  const requests: PlannedRequest[] = [];
  const kept: string[] = [];
  for (const [id, definition] of Object.entries(catalogue.activities)) {
    let body = activityBody(definition);
    const inAccount = account.activities?.[id];
    const locked = lock?.activities[id];
    if (account.activities ? !inAccount : !locked) {
      requests.push({ method: "POST", path: "/v1/definitions/activity/create", body, reason: `create ${id}`, activity: id });
      continue;
    }
    if (inAccount) {
      body = keepAttributes(body, inAccount.attributes, id, kept);
      if (bodyHash(body) === bodyHash(inAccount)) continue;
    } else if (locked) {
      if (locked.hash === bodyHash(body)) continue;
      const lockedAttributes = Object.entries(locked.attributes).flatMap(([, a]) =>
        a.kind === "place" ? [] : [{ name: a.name, display_type: DISPLAY_TYPES[a.kind], field_id: "" }],
      );
      body = keepAttributes(body, lockedAttributes, id, kept);
    }
    requests.push({
      method: "PUT",
      path: "/v1/definitions/activity/modify",
      body: { ...body, activity_field_id: id, state: "live" },
      reason: `modify ${id}`,
      activity: id,
    });
  }
  for (const [id, spec] of customPersonFields(catalogue)) {
    const known = account.personFields ? account.personFields[id] : lock?.personFields[id];
    if (known) continue;
    const body: CustomFieldBody = customFieldBody(id, spec);
    requests.push({ method: "POST", path: "/v1/person/custom-field/create", body, reason: `create person field ${id}` });
  }
  return { problems, breaking, requests, kept, comparedWith: account.activities ? "account" : "lock" };
}

/** "Already exists": the account has it though neither the lock nor a read said so. */
const EXISTS = /already exists|duplicate/i;

/**
 * Sends a plan's requests in order. An activity's create answered "already exists" (an account the
 * lock does not know, which cannot be read) becomes a modify only with `modifyUnseen` (push
 * --allow-breaking): modifying a definition push has not seen could drop the account's own
 * attributes (Ortto's modify may replace the definition) or change a kind. A custom field's create
 * answered "already exists" is done already (its kind is checked against the account's fields
 * where they can be read: planPush).
 * It stops at the first failure: a refused key or an outage fails every request after it, and Ortto
 * bans an address after 15 bad requests in 15 s. What was not sent is named; a re-run sends it.
 * Returns the failures, one line each.
 */
export async function sendPlan(
  send: Send,
  requests: PlannedRequest[],
  log: (line: string) => void = () => {},
  { modifyUnseen = false }: { modifyUnseen?: boolean } = {},
): Promise<string[]> {
  /** One request's outcome: undefined when done, else the failure line. */
  const sendOne = async (request: PlannedRequest): Promise<string | undefined> => {
    let answer = await send(request.method, request.path, request.body);
    const id = request.activity;
    if (answer.status === 400 && EXISTS.test(answerText(answer))) {
      if (request.path === "/v1/person/custom-field/create") {
        log(`ok    ${request.reason} (it existed)`);
        return undefined;
      }
      if (id && request.path === "/v1/definitions/activity/create") {
        if (!modifyUnseen)
          return `${request.reason}: it exists in the account, which push cannot read, and the lock file does not know it; modifying it unseen could drop attributes the account has (Ortto's modify may replace the definition) or change a kind. Compare it with the catalogue in Ortto's app, then run push --allow-breaking to modify it`;
        answer = await send("PUT", "/v1/definitions/activity/modify", {
          ...(request.body as ActivityBody),
          activity_field_id: id,
          state: "live",
        });
        request.reason = `modify ${id} (it existed)`;
      }
    }
    if (answer.status >= 200 && answer.status < 300) {
      log(`ok    ${request.reason}`);
      return undefined;
    }
    return `${request.reason}: ${answerText(answer)}`;
  };
  for (const [i, request] of requests.entries()) {
    const failure = await sendOne(request).catch((err: Error) => `${request.reason}: ${err.message}`);
    if (failure) {
      log(`FAIL  ${failure}`);
      const rest = requests.slice(i + 1).map((r) => r.reason);
      if (rest.length) log(`not sent (push stops at the first failure): ${rest.join(", ")}`);
      return [failure];
    }
  }
  return [];
}

/** Pushes the catalogue to an account in one call: what the tests' setup and `npm start` use. Throws on any problem. */
export async function pushCatalogue(catalogue: ResolvedCatalogue, send: Send): Promise<PlannedRequest[]> {
  const plan = planPush(catalogue, undefined, await readAccount(send));
  if (plan.problems.length) throw new Error(`the catalogue cannot be pushed:\n  ${plan.problems.join("\n  ")}`);
  const failures = await sendPlan(send, plan.requests);
  if (failures.length) throw new Error(`push failed:\n  ${failures.join("\n  ")}`);
  return plan.requests;
}
