import { describe, expect, it } from "vitest";
import { ConfigError, parseVars } from "../../worker/vars.ts";

const base = { DEAD_LETTER_QUEUE: "ortto-relay-dead-letters" };

/** The problems parseVars reports for these vars (it throws them all at once). */
function problems(vars: Record<string, string>) {
  try {
    parseVars({ ...base, ...vars });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe("the relay's vars (worker/vars.ts)", () => {
  it("takes the documented defaults for vars that are absent", () => {
    expect(parseVars(base)).toMatchObject({
      region: "us",
      geoMode: "ip",
      delivery: "inline",
      logRequests: "problems",
      identityField: "str::email",
      allowHeadless: false,
      timeoutMs: 5000,
      pacerTimeoutMs: 500,
      ledgerTimeoutMs: 500,
      retryBaseSeconds: 5,
      retryMaxSeconds: 3600,
      maxRps: 10,
      contactActivityLimit: 50,
      peoplePerNetwork: 50,
      deadLetterQueue: "ortto-relay-dead-letters",
    });
  });

  it("reads set vars, case and spaces aside", () => {
    expect(parseVars({ ...base, ORTTO_REGION: " EU ", GEO_MODE: "edge", DELIVERY: "queue", ORTTO_MAX_RPS: "30" })).toMatchObject({
      region: "eu",
      geoMode: "edge",
      delivery: "queue",
      maxRps: 30,
    });
  });

  it.each([
    ["ORTTO_REGION", "europe", "must be one of us, au, eu"],
    ["GEO_MODE", "edges", "must be one of ip, edge, off"],
    ["DELIVERY", "queued", "must be one of inline, queue"],
    ["LOG_REQUESTS", "everything", "must be one of problems, all"],
    ["IDENTITY_FIELD", "email", "must be one of str::email, str::ei, person_id"],
    ["ALLOW_HEADLESS", "yes", "must be one of true, false"],
    ["ORTTO_MAX_RPS", "ten", "must be a whole number from 1 to 1000000"],
    ["ORTTO_MAX_RPS", "0", "must be a whole number from 1 to 1000000"],
    ["UPSTREAM_TIMEOUT_MS", "5s", "must be a whole number from 1 to 60000"],
    ["PACER_TIMEOUT_MS", "0", "must be a whole number from 1 to 60000"],
    ["LEDGER_TIMEOUT_MS", "500ms", "must be a whole number from 1 to 60000"],
    ["RETRY_BASE_SECONDS", "1.5", "must be a whole number from 1 to 43200"],
    ["RETRY_MAX_SECONDS", "86400", "must be a whole number from 1 to 43200"],
    ["CONTACT_ACTIVITY_LIMIT", "51", "must be a whole number from 1 to 50"],
    ["PEOPLE_PER_NETWORK", "-5", "must be a whole number from 1 to 1000000"],
    ["ORTTO_API_BASE", "api.ap3api.com", "must be an http(s) URL such as https://api.ap3api.com"],
    ["ALLOWED_ORIGINS", "https://shop.example,*", expect.stringContaining("never *")],
    ["ALLOWED_ORIGINS", "shop.example", expect.stringContaining("https://shop.example")],
  ])("refuses %s=%s naming the var and what it accepts, never defaulting", (name, value, message) => {
    expect(problems({ [name]: value })).toEqual([{ path: name, message }]);
  });

  it.each([
    "https://a b",
    "https://api.ap3api.com/ v1",
    "https://api.ap3api.com?region=eu",
    "https://api.ap3api.com#x",
    "https://api.ap3api.com?",
    "ftp://api.ap3api.com",
    "https://",
  ])("refuses ORTTO_API_BASE=%s, which no request could be sent to, rather than fail later", (value) => {
    expect(problems({ ORTTO_API_BASE: value })).toEqual([
      { path: "ORTTO_API_BASE", message: "must be an http(s) URL such as https://api.ap3api.com" },
    ]);
  });

  it("takes an ORTTO_API_BASE with a path (a proxy in front of Ortto)", () => {
    expect(parseVars({ ...base, ORTTO_API_BASE: "http://ortto.test/proxy/" }).apiBase).toBe("http://ortto.test/proxy/");
  });

  it("reads a var written as a TOML number or boolean (ORTTO_MAX_RPS = 30, ALLOW_HEADLESS = true), never defaulting it", () => {
    // wrangler.toml's unquoted values reach the worker as JSON values, not strings.
    expect(parseVars({ ...base, ORTTO_MAX_RPS: 30, CONTACT_ACTIVITY_LIMIT: 20, ALLOW_HEADLESS: true })).toMatchObject({
      maxRps: 30,
      contactActivityLimit: 20,
      allowHeadless: true,
    });
    expect(() => parseVars({ ...base, UPSTREAM_TIMEOUT_MS: 1.5 })).toThrow(/UPSTREAM_TIMEOUT_MS must be a whole number/);
  });

  it("refuses a var written as a TOML table or array, naming it", () => {
    const err = (() => {
      try {
        parseVars({ ...base, ORTTO_REGION: { name: "eu" }, GEO_MODE: ["ip"] });
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(err?.problems.map((p) => p.path)).toEqual(["ORTTO_REGION", "GEO_MODE"]);
  });

  it("refuses a var set but empty (a CI variable never defined: --var ORTTO_REGION:) rather than default it", () => {
    expect(problems({ ORTTO_REGION: "", ORTTO_MAX_RPS: " " })).toEqual([
      { path: "ORTTO_REGION", message: "must be one of us, au, eu (it is set but empty: remove it for the default, us)" },
      { path: "ORTTO_MAX_RPS", message: "must be a whole number from 1 to 1000000 (it is set but empty: remove it for the default, 10)" },
    ]);
  });

  it.each(["https://shop.example:443", "http://localhost:80", "https://*.shop.example:443/"])(
    "refuses ALLOWED_ORIGINS=%s: a browser's Origin never names the scheme's default port, so it would never match",
    (value) => {
      expect(problems({ ALLOWED_ORIGINS: `https://other.example,${value}` })).toEqual([
        {
          path: "ALLOWED_ORIGINS",
          message: "must not name the scheme's default port (:443 for https, :80 for http): an Origin never does",
        },
      ]);
    },
  );

  it("requires DEAD_LETTER_QUEUE, the name a replay batch comes from", () => {
    expect(() => parseVars({})).toThrow(/DEAD_LETTER_QUEUE must name/);
  });

  it("lists every problem at once and never repeats a value (a key pasted into a var stays out of logs)", () => {
    const err = (() => {
      try {
        parseVars({ ...base, ORTTO_REGION: "sk-secret-looking-value", GEO_MODE: "edges" });
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(err?.problems.map((p) => p.path)).toEqual(["ORTTO_REGION", "GEO_MODE"]);
    expect(err?.message).toBe(
      "The relay's configuration is invalid: ORTTO_REGION must be one of us, au, eu; GEO_MODE must be one of ip, edge, off",
    );
    expect(err?.message).not.toContain("sk-secret");
  });
});
