import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import catalogue from "../../relay.config.ts";
import { main } from "../../scripts/plan/cli.ts";
import { orttoClient, planPush, sendPlan } from "../../scripts/plan/push.ts";
import { defineCatalogue, type ResolvedCatalogue } from "../../shared/catalogue.ts";
import {
  activityBody,
  activityIdFor,
  diffLocks,
  fieldIdFor,
  idProblems,
  limitProblems,
  lockOf,
  lockOfAccount,
  orttoSlug,
} from "../../shared/definitions.ts";

const tmp = mkdtempSync(join(tmpdir(), "plan-unit-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A catalogue of one activity with these attributes. */
const withAttributes = (attributes: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  defineCatalogue({
    activities: { "act:cm:signed-up": { name: "Signed up", attributes, ...extra } },
    personFields: { "str::email": true },
  } as never) as ResolvedCatalogue;

describe("ids Ortto derives from a name and a kind", () => {
  it("makes the seed's examples: Payment plan as text, Size preference, Logged in", () => {
    expect(fieldIdFor("text", "Payment plan")).toBe("str:cm:payment-plan");
    expect(fieldIdFor("currency", "Order total")).toBe("int:cm:order-total");
    expect(fieldIdFor("multi_select", "Categories")).toBe("sst:cm:categories");
    expect(activityIdFor("Logged in")).toBe("act:cm:logged-in");
    expect(orttoSlug("  Café & Bar: 2nd floor ")).toBe("cafe-bar-2nd-floor");
  });

  it("finds every id of relay.config.ts to be the one Ortto will create", () => {
    expect(idProblems(catalogue)).toEqual([]);
  });

  it("names an activity, an attribute and a person field whose id their name and kind do not produce", () => {
    const bad = defineCatalogue({
      activities: {
        "act:cm:signed-up": {
          name: "Registered",
          attributes: {
            "str:cm:plan": { kind: "text", orttoName: "Payment plan" },
            "str::source": "text",
            "int::v": "currency",
          },
        },
      },
      personFields: { "str:cm:company": { kind: "text", orttoName: "Employer" } },
    });
    expect(idProblems(bad)).toEqual([
      'activities.act:cm:signed-up: Ortto gives an activity named "Registered" the id act:cm:registered',
      'activities.act:cm:signed-up.attributes.str:cm:plan: Ortto gives a text attribute named "Payment plan" the id str:cm:payment-plan',
      'activities.act:cm:signed-up.attributes.str::source: Ortto gives a text attribute named "Source" the id str:cm:source (custom attributes are :cm:; a built-in id such as str::email is a person field, sent in fields)',
      'personFields.str:cm:company: Ortto gives a text field named "Employer" the id str:cm:employer',
    ]);
  });
});

describe("Ortto's limits, checked before anything is sent", () => {
  it("refuses a 16th attribute, the conversion value aside", () => {
    const sixteen = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`str:cm:a${i}`, "text"]));
    expect(limitProblems(withAttributes({ ...Object.fromEntries(Object.entries(sixteen).slice(0, 15)), "int::v": "currency" }))).toEqual(
      [],
    );
    expect(limitProblems(withAttributes(sixteen))).toEqual([
      "activities.act:cm:signed-up: 16 attributes; Ortto allows at most 15 an activity (the conversion value aside)",
    ]);
  });

  it("counts the account's own custom fields towards Ortto's 100", () => {
    const account = Array.from({ length: 100 }, (_, i) => `str:cm:field-${i}`);
    expect(limitProblems(catalogue, account.slice(0, 99))).toEqual([]);
    expect(limitProblems(catalogue, account)).toEqual([
      "personFields: 101 custom person fields (with the account's own); Ortto allows at most 100 an account",
    ]);
  });

  it("refuses duplicate names, over-long names, a place attribute, a conversion value that is not currency and a mapping to a field of another type", () => {
    const bad = defineCatalogue({
      activities: {
        "act:cm:a": {
          name: "Same",
          attributes: { "geo:cm:where": "place", "int::v": "integer", "str:cm:b": { kind: "text", mapTo: "int:cm:age" } },
        },
        "act:cm:b": { name: "same", attributes: { "str:cm:long": { kind: "text", orttoName: "x".repeat(101) } } },
      },
      personFields: { "str:cm:x": { kind: "text", orttoName: "Dup" }, "str:cm:y": { kind: "text", orttoName: "dup" } },
    } as never);
    const problems = limitProblems(bad);
    expect(problems).toContain(
      "activities.act:cm:a.attributes.geo:cm:where: Ortto's definitions API has no display type for a place; use text, or define it in Ortto's app",
    );
    expect(problems).toContain("activities.act:cm:a.attributes.int::v: Ortto's conversion value is a currency, not integer");
    expect(problems).toContain("activities.act:cm:a.attributes.str:cm:b: a text attribute cannot fill int:cm:age, a field of another type");
    expect(problems).toContain('activities.act:cm:b: the name "same" is taken by act:cm:a (Ortto refuses duplicate activity names)');
    expect(problems).toContain('personFields.str:cm:y: the name "dup" is taken by str:cm:x (Ortto\'s field names are unique)');
    expect(problems.some((p) => p.includes("101 characters; at most 100 (the relay's bound: Ortto documents none)"))).toBe(true);
  });
});

describe("the definition push sends", () => {
  it("carries name, icon, touch, conversion value, display template and each attribute's display type and CDP mapping", () => {
    const body = activityBody(catalogue.activities["act:cm:logged-in"] as never);
    expect(body).toEqual({
      name: "Logged in",
      icon_id: "happy-illustration",
      track_conversion_value: true,
      touch: true,
      filterable: true,
      visible_in_feeds: true,
      display_style: { type: "activity_template", title: "Logged in on the {{attribute.payment_plan}} with {{attribute.web_browser}}" },
      attributes: [
        { name: "Payment plan", display_type: "text", field_id: "" },
        { name: "Account owner", display_type: "bool", field_id: "" },
        { name: "Web browser", display_type: "text", field_id: "" },
      ],
    });
    const mapped = activityBody(
      withAttributes({ "str:cm:first-name": { kind: "text", mapTo: "str::first" } }).activities["act:cm:signed-up"] as never,
    );
    expect(mapped.attributes).toEqual([{ name: "First name", display_type: "text", field_id: "str::first" }]);
  });
});

describe("diff: the catalogue against the lock and the account", () => {
  const before = lockOf(withAttributes({ "str:cm:plan": "text", "str:cm:page": "url", "int:cm:seats": "integer" }));

  it("names a removed attribute, a kind changed in place and a renamed id as breaking, and a new attribute as a change", () => {
    const after = lockOf(
      withAttributes({ "str:cm:plan": "text", "str:cm:page": "text", "int:cm:licences": "integer", "bol:cm:trial": "boolean" }),
    );
    const changes = diffLocks(after, before, "lock");
    expect(changes.filter((c) => c.level === "breaking").map((c) => `${c.subject}: ${c.message.split(";")[0]}`)).toEqual([
      "act:cm:signed-up str:cm:page: kind changed from url to text",
      "act:cm:signed-up int:cm:seats: attribute renamed to int:cm:licences (integer): a new name is a new attribute to Ortto",
    ]);
    expect(changes.filter((c) => c.level === "change").map((c) => c.subject)).toEqual([
      "act:cm:signed-up int:cm:licences",
      "act:cm:signed-up bol:cm:trial",
    ]);
  });

  it("names a removed activity as breaking, and says what to do instead", () => {
    const none = { activities: {}, personFields: {} };
    const [change] = diffLocks(none, before, "lock");
    expect(change).toMatchObject({ level: "breaking", subject: "act:cm:signed-up" });
    expect(change?.message).toMatch(/push never deletes: it stays in Ortto \(archive it in Ortto's app/);
  });

  it("reports an attribute missing from the account as drift, and the account's own attributes as notes only", () => {
    const wanted = lockOf(withAttributes({ "str:cm:plan": "text", "str:cm:page": "url" }));
    const body = activityBody(withAttributes({ "str:cm:plan": "text", "str:cm:legacy": "text" }).activities["act:cm:signed-up"] as never);
    const changes = diffLocks(wanted, lockOfAccount({ activities: { "act:cm:signed-up": body } }), "account");
    expect(changes).toEqual([
      {
        level: "note",
        subject: "act:cm:signed-up str:cm:legacy",
        message: "attribute in the account, not in the catalogue (push keeps it)",
      },
      {
        level: "change",
        subject: "act:cm:signed-up str:cm:page",
        message: "attribute (url) not defined in the account: Ortto ignores it until push adds it",
      },
    ]);
  });

  it("finds nothing to send when the account holds the catalogue, and keeps an attribute only the account has", () => {
    const lock = lockOf(catalogue);
    const account = {
      activities: Object.fromEntries(Object.entries(catalogue.activities).map(([id, d]) => [id, activityBody(d)])),
      personFields: {},
    };
    const plan = planPush(catalogue, lock, { ...account, personFields: { "str:cm:company": { name: "Company", kind: "text" } } });
    expect(plan.requests).toEqual([]);
    const legacy = { name: "Legacy", display_type: "text" as const, field_id: "" };
    const viewed = account.activities["act:cm:viewed-page"];
    const withLegacy = {
      ...account.activities,
      "act:cm:viewed-page": { ...viewed, attributes: [...(viewed?.attributes ?? []), legacy] },
    } as never;
    const again = planPush(catalogue, lock, { activities: withLegacy });
    // The legacy attribute stays (push never deletes): nothing changed, so nothing is sent.
    expect(again.requests).toEqual([]);
    expect(again.kept).toEqual(["act:cm:viewed-page str:cm:legacy"]);
    // …and diff agrees: the account's own attribute is a note, not drift.
    const changes = diffLocks(lock, lockOfAccount({ activities: withLegacy }), "account", new Set());
    expect(changes).toEqual([
      {
        level: "note",
        subject: "act:cm:viewed-page str:cm:legacy",
        message: "attribute in the account, not in the catalogue (push keeps it)",
      },
    ]);
  });
});

describe("sending a push", () => {
  const existing = async (sent: string[], modifyUnseen: boolean) => {
    const plan = planPush(catalogue, undefined, {});
    return sendPlan(
      async (method, path, body) => {
        sent.push(`${method} ${path} ${(body as { activity_field_id?: string }).activity_field_id ?? ""}`.trim());
        if (method === "POST" && path.endsWith("/create"))
          return { status: 400, body: { code: 400, error: 'An activity named "X" already exists' } };
        return { status: 200, body: {} };
      },
      plan.requests.slice(0, 1).concat(plan.requests.slice(-1)),
      () => {},
      { modifyUnseen },
    );
  };

  it("with --allow-breaking, modifies an activity whose create Ortto answers 'already exists', and takes an existing custom field as done", async () => {
    const sent: string[] = [];
    expect(await existing(sent, true)).toEqual([]);
    expect(sent).toEqual([
      "POST /v1/definitions/activity/create",
      "PUT /v1/definitions/activity/modify act:cm:logged-in",
      "POST /v1/person/custom-field/create",
    ]);
  });

  it("stops at an activity that exists in an account it could not read and the lock does not know, rather than modify it unseen", async () => {
    const sent: string[] = [];
    const failures = await existing(sent, false);
    expect(sent).toEqual(["POST /v1/definitions/activity/create"]);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toContain(
      "create act:cm:logged-in: it exists in the account, which push cannot read, and the lock file does not know it",
    );
    expect(failures[0]).toContain("run push --allow-breaking to modify it");
  });
});

describe("the client's pacing", () => {
  it("spaces requests by the budget and waits out a 429's try-in-seconds", async () => {
    let clock = 0;
    const waits: number[] = [];
    const answers = [429, 200, 200];
    const client = orttoClient({
      base: "http://ortto.test",
      key: "k",
      rps: 4,
      now: () => clock,
      sleep: async (ms) => {
        waits.push(ms);
        clock += ms;
      },
      fetch: (async () => {
        const status = answers.shift() ?? 200;
        return new Response(JSON.stringify(status === 429 ? { error: { code: "rate-limit", "try-in-seconds": 3 } } : {}), { status });
      }) as typeof fetch,
    });
    expect((await client("POST", "/v1/person/custom-field/get", {})).status).toBe(200);
    expect((await client("POST", "/v1/person/custom-field/get", {})).status).toBe(200);
    expect(waits).toEqual([3000, 250, 250]);
  });
});

describe("npm run plan -- push --dry-run", () => {
  it("prints every request it would send, body and all, sends no write and never prints the key", async () => {
    const sent: string[] = [];
    let out = "";
    const code = await main(["push", "--dry-run", "--lock", join(tmp, "absent.lock.json")], {
      root: tmp,
      catalogue,
      env: { ORTTO_API_KEY: "secret-key-4f1a", ORTTO_REGION: "eu" },
      out: (t) => {
        out += t;
      },
      err: (t) => {
        out += t;
      },
      // An account like Ortto's as documented: custom fields readable, activity definitions not.
      fetch: (async (url: string, init: RequestInit) => {
        sent.push(`${init.method} ${url}`);
        if (url.endsWith("/v1/person/custom-field/get")) return Response.json({ fields: [] });
        return Response.json({ code: 404, error: "not found" }, { status: 404 });
      }) as typeof fetch,
    });
    expect(code).toBe(0);
    expect(sent).toEqual([
      "POST https://api.eu.ap3api.com/v1/instance-schema/get",
      "POST https://api.eu.ap3api.com/v1/person/custom-field/get",
    ]);
    expect(out).toContain("dry run: 5 requests would be sent to https://api.eu.ap3api.com; nothing is sent");
    expect(out).toContain("note: Ortto documents no read endpoint for activity definitions");
    expect(out).toContain(
      "# create act:cm:logged-in\nPOST https://api.eu.ap3api.com/v1/definitions/activity/create\nX-Api-Key: (the environment (ORTTO_API_KEY), not shown)",
    );
    expect(out).toContain("# create person field str:cm:company\nPOST https://api.eu.ap3api.com/v1/person/custom-field/create");
    expect(out).toContain('"name": "Placed order"');
    expect(out).not.toContain("secret-key-4f1a");
  });

  it("refuses a catalogue whose ids Ortto would not create, sending nothing", async () => {
    let err = "";
    const bad = { ...catalogue, activities: { ...catalogue.activities, "act:cm:signed-up": { name: "Registered", attributes: {} } } };
    const code = await main(["push", "--dry-run", "--lock", join(tmp, "absent.lock.json")], {
      root: tmp,
      catalogue: bad,
      env: {},
      out: () => {},
      err: (t) => {
        err += t;
      },
    });
    expect(code).toBe(1);
    expect(err).toContain('activities.act:cm:signed-up: Ortto gives an activity named "Registered" the id act:cm:registered');
  });

  it("refuses a breaking change without --allow-breaking, saying what to do instead", async () => {
    const lockPath = join(tmp, "breaking.lock.json");
    const { lockText } = await import("../../scripts/plan/cli.ts");
    const { writeFileSync } = await import("node:fs");
    const smaller = structuredClone(lockOf(catalogue));
    smaller.activities["act:cm:viewed-page"] = {
      ...smaller.activities["act:cm:viewed-page"],
      attributes: { "bol:cm:gone": { name: "Gone", kind: "boolean" } },
    } as never;
    writeFileSync(lockPath, lockText(smaller));
    let err = "";
    const io = {
      root: tmp,
      catalogue,
      env: {},
      out: () => {},
      err: (t: string) => {
        err += t;
      },
    };
    expect(await main(["push", "--dry-run", "--lock", lockPath], io)).toBe(1);
    expect(err).toContain("breaking changes, nothing was sent:\n  - act:cm:viewed-page bol:cm:gone: attribute removed from the catalogue");
    expect(err).toContain("give the new meaning a new\nattribute (another name, so another id)");
    expect(await main(["push", "--dry-run", "--allow-breaking", "--lock", lockPath], io)).toBe(0);
    expect(readFileSync(lockPath, "utf8")).toBe(lockText(smaller));
  });
});

describe("npm run plan", () => {
  it("exits 1 naming an id Ortto would not create", async () => {
    let err = "";
    const bad = withAttributes({ "str:cm:plan": { kind: "text", orttoName: "Payment plan" } });
    const code = await main([], {
      root: tmp,
      catalogue: bad,
      env: {},
      out: () => {},
      err: (t) => {
        err += t;
      },
    });
    expect(code).toBe(1);
    expect(err).toContain(
      'activities.act:cm:signed-up.attributes.str:cm:plan: Ortto gives a text attribute named "Payment plan" the id str:cm:payment-plan',
    );
  });

  it("writes a JSON Schema of every activity's friendly and raw attributes", async () => {
    const code = await main(["--json-schema", "schema.json"], { root: tmp, catalogue, env: {}, out: () => {}, err: () => {} });
    expect(code).toBe(0);
    const schema = JSON.parse(readFileSync(join(tmp, "schema.json"), "utf8"));
    expect(Object.keys(schema.$defs)).toContain("act:cm:placed-order/friendly");
    expect(schema.$defs["act:cm:placed-order/friendly"].properties.orderTotal.type).toBe("number");
    expect(schema.$defs["act:cm:placed-order/raw"].properties["int:cm:order-total"].type).toBe("integer");
    expect(schema.$defs["act:cm:started-trial/raw"].required).toEqual(["str:cm:plan"]);
    expect(Object.keys(schema.$defs["person/friendly"].properties)).toEqual(["first", "last", "email", "ei", "phone", "company"]);
    // What the relay fills is no page's to send.
    expect(schema.$defs["act:cm:logged-in/friendly"].properties.webBrowser).toBeUndefined();
  });
});

describe("a kind changed by renaming the catalogue key", () => {
  it("is breaking against the account: an attribute of the same name under another kind's id", () => {
    const account = activityBody(withAttributes({ "str:cm:seats": "text" }).activities["act:cm:signed-up"] as never);
    const wanted = lockOf(withAttributes({ "int:cm:seats": "integer" }));
    const plan = planPush(withAttributes({ "int:cm:seats": "integer" }), undefined, {
      activities: { "act:cm:signed-up": account },
      personFields: {},
    });
    expect(plan.breaking.map((c) => `${c.subject}: ${c.message.split(";")[0]}`)).toEqual([
      'act:cm:signed-up str:cm:seats: kind changed from text to integer (str:cm:seats is now int:cm:seats, of the same name "Seats")',
    ]);
    expect(diffLocks(wanted, lockOfAccount({ activities: { "act:cm:signed-up": account } }), "account")[0]?.level).toBe("breaking");
  });

  it("is breaking against the account for a custom person field, which 'already exists' would otherwise take as pushed", () => {
    const renamed = defineCatalogue({
      activities: {},
      personFields: { "int:cm:company": "integer" },
    } as never) as ResolvedCatalogue;
    const plan = planPush(renamed, undefined, { activities: {}, personFields: { "str:cm:company": { name: "Company", kind: "text" } } });
    expect(plan.breaking.map((c) => `${c.subject}: ${c.message.split(";")[0]}`)).toEqual([
      'int:cm:company: kind changed from text to integer (str:cm:company has the name "Company")',
    ]);
  });
});

describe("a custom person field's kind", () => {
  const fields = (personFields: Record<string, unknown>) => defineCatalogue({ activities: {}, personFields } as never) as ResolvedCatalogue;

  it("changed in place is breaking against the lock and the account, and push refuses it even with --allow-breaking", async () => {
    const now = lockOf(fields({ "str:cm:company": "url" }));
    const was = lockOf(fields({ "str:cm:company": "text" }));
    const message = "kind changed from text to url";
    expect(diffLocks(now, was, "lock").map((c) => `${c.level} ${c.subject}: ${c.message.split(";")[0]}`)).toEqual([
      `breaking str:cm:company: ${message}`,
    ]);
    expect(
      diffLocks(now, lockOfAccount({ personFields: { "str:cm:company": { name: "Company", kind: "text" } } }), "account").map(
        (c) => c.level,
      ),
    ).toEqual(["breaking"]);
    const { writeFileSync } = await import("node:fs");
    const { lockText } = await import("../../scripts/plan/cli.ts");
    const lockPath = join(tmp, "field-kind.lock.json");
    writeFileSync(lockPath, lockText(was));
    let err = "";
    const code = await main(["push", "--dry-run", "--allow-breaking", "--lock", lockPath], {
      root: tmp,
      catalogue: fields({ "str:cm:company": "url" }),
      env: {},
      out: () => {},
      err: (t) => {
        err += t;
      },
    });
    expect(code).toBe(1);
    expect(err).toContain(`push never changes a kind in place, nothing was sent:\n  - str:cm:company: ${message}`);
  });

  it("removed from the catalogue is breaking against the lock", () => {
    const changes = diffLocks(lockOf(fields({})), lockOf(fields({ "str:cm:company": "text" })), "lock");
    expect(changes.map((c) => `${c.level} ${c.subject}: ${c.message.split(";")[0]}`)).toEqual([
      "breaking str:cm:company: custom person field removed from the catalogue",
    ]);
  });
});

describe("npm run plan -- push --env", () => {
  it("keeps a lock per environment, so a push to staging does not make production's push send nothing", async () => {
    const { mkdirSync, existsSync } = await import("node:fs");
    const root = join(tmp, "envs");
    mkdirSync(root, { recursive: true });
    const writes: string[] = [];
    const push = (env: string) =>
      main(["push", "--env", env], {
        root,
        catalogue,
        env: { ORTTO_API_KEY: `key-of-${env}`, ORTTO_API_BASE: `https://${env}.ortto.test` },
        out: () => {},
        err: () => {},
        // Accounts like Ortto's as documented: custom fields readable, activity definitions not.
        fetch: (async (url: string) => {
          if (url.endsWith("/v1/person/custom-field/get")) return Response.json({ fields: [] });
          if (url.endsWith("/v1/instance-schema/get")) return Response.json({ code: 404, error: "not found" }, { status: 404 });
          writes.push(url);
          return Response.json({});
        }) as typeof fetch,
      });
    expect(await push("staging")).toBe(0);
    expect(writes.filter((u) => u.startsWith("https://staging."))).toHaveLength(5);
    expect(existsSync(join(root, "relay.plan.staging.lock.json"))).toBe(true);
    expect(await push("production")).toBe(0);
    expect(writes.filter((u) => u.startsWith("https://production."))).toHaveLength(5);
    expect(existsSync(join(root, "relay.plan.production.lock.json"))).toBe(true);
  });
});

describe("the account push talks to", () => {
  it("with --env, is never the local account of .dev.vars", async () => {
    const { mkdirSync, writeFileSync } = await import("node:fs");
    const root = join(tmp, "dev-vars");
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, ".dev.vars"), "ORTTO_API_KEY=local-key\nORTTO_API_BASE=http://127.0.0.1:8788\n");
    const sent: string[] = [];
    let out = "";
    const code = await main(["push", "--env", "production"], {
      root,
      catalogue,
      env: {},
      out: (t) => {
        out += t;
      },
      err: (t) => {
        out += t;
      },
      fetch: (async (url: string) => {
        sent.push(url);
        return Response.json({});
      }) as typeof fetch,
    });
    expect(code).toBe(1);
    expect(out).toContain("no ORTTO_API_KEY in the environment or .dev.vars.production");
    expect(sent).toEqual([]);
  });
});

describe("npm run plan -- push and diff when Ortto refuses, fails or hangs", () => {
  const KEY = "secret-key-9d2e";
  /** Runs `npm run plan -- <args>` against an account answering with `answer`; the lock holds the catalogue as pushed. */
  async function run(args: string[], answer: (url: string, init: RequestInit) => Promise<Response>, lockText?: string) {
    const { writeFileSync } = await import("node:fs");
    const { lockText: text } = await import("../../scripts/plan/cli.ts");
    const lockPath = join(tmp, `answers-${Math.random().toString(36).slice(2)}.lock.json`);
    writeFileSync(lockPath, lockText ?? text(lockOf(catalogue)));
    const before = readFileSync(lockPath, "utf8");
    const sent: string[] = [];
    let out = "";
    const code = await main([...args, "--lock", lockPath], {
      root: tmp,
      catalogue,
      env: { ORTTO_API_KEY: KEY, ORTTO_API_BASE: "http://ortto.test" },
      out: (t) => {
        out += t;
      },
      err: (t) => {
        out += t;
      },
      sleep: async () => {},
      timeoutMs: 50,
      fetch: (async (url: string, init: RequestInit) => {
        sent.push(`${init.method} ${new URL(url).pathname}`);
        return answer(url, init);
      }) as typeof fetch,
    });
    return { code, out, sent, lockUnchanged: readFileSync(lockPath, "utf8") === before };
  }
  const refused = (status: number) => async () => Response.json({ code: status, error: `Invalid API key ${KEY}` }, { status });

  for (const status of [401, 403, 500, 503]) {
    it(`push stops with exit 1 when reading the account is answered ${status}, rather than finding nothing to push`, async () => {
      const r = await run(["push"], refused(status));
      expect(r.code).toBe(1);
      expect(r.out).toContain(
        `push: the account could not be read: /v1/instance-schema/get: ${status <= 403 ? "the key was refused" : "Ortto failed"} (${status}`,
      );
      expect(r.out).not.toContain("nothing to push");
      expect(r.sent).toEqual(["POST /v1/instance-schema/get"]);
      expect(r.out).not.toContain(KEY);
    });
  }

  it("diff exits 1 when the account refuses the key, rather than reporting no drift", async () => {
    const r = await run(["diff"], refused(401));
    expect(r.code).toBe(1);
    expect(r.out).toContain("The account was not read: /v1/instance-schema/get: the key was refused (401");
    expect(r.out).not.toContain("No drift.");
    expect(r.out).not.toContain(KEY);
  });

  it("push stops at the first refused definition (400), names it, sends nothing after it and keeps the lock", async () => {
    const r = await run(["push"], async (url) => {
      if (url.endsWith("/v1/person/custom-field/get")) return Response.json({ fields: [] });
      if (url.endsWith("/v1/instance-schema/get")) return Response.json({ activities: [] });
      return Response.json({ code: 400, error: `icon_id is not an icon (key ${KEY})` }, { status: 400 });
    });
    expect(r.code).toBe(1);
    expect(r.sent).toEqual(["POST /v1/instance-schema/get", "POST /v1/person/custom-field/get", "POST /v1/definitions/activity/create"]);
    expect(r.out).toContain("FAIL  create act:cm:logged-in: 400: icon_id is not an icon");
    expect(r.out).toMatch(/not sent \(push stops at the first failure\): create act:cm:placed-order, .*create person field str:cm:company/);
    expect(r.out).toContain("push stopped there; the lock file is unchanged");
    expect(r.out).not.toContain(KEY);
    expect(r.lockUnchanged).toBe(true);
  });

  it("push names a request Ortto never answers and exits 1, instead of waiting for ever", async () => {
    const r = await run(["push"], async (url, init) => {
      if (url.endsWith("/v1/person/custom-field/get")) return Response.json({ fields: [] });
      if (url.endsWith("/v1/instance-schema/get")) return Response.json({ activities: [] });
      // A hung connection: only the client's timeout ends it.
      return new Promise<Response>((_, reject) => init.signal?.addEventListener("abort", () => reject(init.signal?.reason)));
    });
    expect(r.code).toBe(1);
    expect(r.out).toContain("FAIL  create act:cm:logged-in: POST /v1/definitions/activity/create: no answer in 0.05 s");
    expect(r.lockUnchanged).toBe(true);
  });

  it("push gives up on a 429 whose try-in-seconds is longer than a minute, and on a sixth 429 in a row", async () => {
    const long = await run(["push"], async () =>
      Response.json({ error: { code: "rate-limit", "try-in-seconds": 86_400 } }, { status: 429 }),
    );
    expect(long.code).toBe(1);
    expect(long.out).toContain("the account's request budget is spent (429");
    expect(long.sent).toHaveLength(1);

    const endless = await run(["push"], async () => Response.json({ error: { code: "rate-limit", "try-in-seconds": 1 } }, { status: 429 }));
    expect(endless.code).toBe(1);
    expect(endless.sent).toHaveLength(6);
  });

  it("diff and push name an ORTTO_API_BASE that is not a URL, without throwing", async () => {
    for (const command of ["diff", "push"]) {
      let out = "";
      const code = await main([command, "--lock", join(tmp, "absent.lock.json")], {
        root: tmp,
        catalogue,
        env: { ORTTO_API_KEY: KEY, ORTTO_API_BASE: "api.ortto.example" },
        out: (t) => {
          out += t;
        },
        err: (t) => {
          out += t;
        },
      });
      expect(code).toBe(1);
      expect(out).toContain("ORTTO_API_BASE must be an http(s) URL");
    }
  });

  it("push and diff stop with exit 1 on a lock file that is not JSON or not a lock, naming it", async () => {
    const ok = async () => Response.json({ fields: [] });
    for (const text of ["{ not json", '{"activities": []}']) {
      for (const command of ["push", "diff"]) {
        const r = await run([command], ok, text);
        expect(r.code).toBe(1);
        expect(r.out).toMatch(/\.lock\.json is not (JSON|a lock file)/);
        expect(r.out).toContain("restore it from git");
        expect(r.sent).toEqual([]);
      }
    }
  });
});
