import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import catalogue from "../../relay.config.ts";
import { main } from "../../scripts/plan/cli.ts";
import { startLocalEmulator } from "../fixtures/local-emulator.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const KEY = "plan-test-ortto-key-81ce";

describe("npm run plan -- push and diff against the emulated account", () => {
  let emulator: Awaited<ReturnType<typeof startLocalEmulator>>;
  const dir = mkdtempSync(join(tmpdir(), "plan-push-"));
  const lock = join(dir, "relay.plan.lock.json");

  /** Runs `npm run plan -- …` as a user would, against the emulator; resolves with its exit code and output. */
  async function plan(...args: string[]) {
    return planWith(lock, ...args);
  }
  async function planWith(lock: string, ...args: string[]) {
    const env = { ...process.env, ORTTO_API_KEY: KEY, ORTTO_API_BASE: emulator.url, ORTTO_MAX_RPS: "200" };
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [join(root, "scripts", "plan.mjs"), ...args, "--lock", lock], {
        cwd: root,
        env,
      });
      return { code: 0, output: stdout + stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, output: e.stdout + e.stderr };
    }
  }

  beforeAll(async () => {
    emulator = await startLocalEmulator();
  }, 60_000);
  afterAll(async () => {
    await emulator?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it("creates the catalogue in an empty account, then finds nothing to send and no drift", async () => {
    const first = await plan("push");
    expect(first.output).toContain("ok    create act:cm:logged-in");
    expect(first.output).toContain("ok    create person field str:cm:company");
    expect(first.output).toMatch(/pushed 5 changes to http:\/\/127\.0\.0\.1:\d+; wrote .*relay\.plan\.lock\.json/);
    expect(first.code).toBe(0);
    expect(JSON.parse(readFileSync(lock, "utf8")).activities["act:cm:logged-in"].attributes["str:cm:payment-plan"]).toEqual({
      name: "Payment plan",
      kind: "text",
    });

    const second = await plan("push");
    expect(second.output).toContain("nothing to push");
    expect(second.code).toBe(0);

    const diff = await plan("diff");
    expect(diff.output).toContain("No drift.");
    expect(diff.code).toBe(0);
    for (const { output } of [first, second, diff]) expect(output).not.toContain(KEY);
  }, 60_000);

  it("names an attribute removed from the account as drift, exit 1, and push puts it back", async () => {
    // Someone edits the activity in the account (as in Ortto's app): the referrer is gone.
    const res = await fetch(`${emulator.url}/v1/definitions/activity/modify`, {
      method: "PUT",
      headers: { "X-Api-Key": KEY, "Content-Type": "application/json" },
      body: JSON.stringify({
        activity_field_id: "act:cm:viewed-page",
        name: "Viewed page",
        attributes: [
          { name: "Page url", display_type: "link", field_id: "" },
          { name: "Page title", display_type: "text", field_id: "" },
        ],
      }),
    });
    expect(res.status).toBe(200);

    const diff = await plan("diff");
    expect(diff.output).toContain(
      "| change | `act:cm:viewed-page str:cm:referrer` | account: attribute (text) not defined in the account: Ortto ignores it until push adds it |",
    );
    expect(diff.output).toContain("**Drift: 0 breaking, 1 other.**");
    expect(diff.code).toBe(1);

    const push = await plan("push");
    expect(push.output).toContain("ok    modify act:cm:viewed-page");
    expect(push.output).toContain("pushed 1 change");
    expect((await plan("diff")).code).toBe(0);
  }, 60_000);

  it("stops at a failed create, keeps the lock, and a re-run creates only what is missing", async () => {
    await fetch(`${emulator.url}/_emulator/reset?account=1`, { method: "POST" });
    const fresh = join(dir, "fresh.lock.json");
    /** `npm run plan -- push` in this process, against the emulator; `failWrite` answers that write (1-based) 503. */
    async function push(failWrite?: number) {
      let output = "";
      let writes = 0;
      const code = await main(["push", "--lock", fresh], {
        root,
        catalogue,
        env: { ORTTO_API_KEY: KEY, ORTTO_API_BASE: emulator.url, ORTTO_MAX_RPS: "200" },
        out: (t) => {
          output += t;
        },
        err: (t) => {
          output += t;
        },
        fetch: (async (url: string, init: RequestInit) => {
          if (/\/(create|modify)$/.test(url) && ++writes === failWrite)
            return Response.json({ code: 503, error: "Service unavailable" }, { status: 503 });
          return fetch(url, init);
        }) as typeof fetch,
      });
      return { code, output };
    }
    const first = await push(3);
    expect(first.code).toBe(1);
    expect(first.output).toContain("FAIL  create act:cm:viewed-page: 503: Service unavailable");
    expect(first.output).toContain(
      "not sent (push stops at the first failure): create act:cm:started-trial, create person field str:cm:company",
    );
    expect(first.output).toContain("push stopped there; the lock file is unchanged");
    expect(existsSync(fresh)).toBe(false);

    const second = await push();
    expect(second.code).toBe(0);
    const created = (output: string) => [...output.matchAll(/^ok {4}(\S.*)$/gm)].map((m) => m[1]);
    expect(created(first.output)).toEqual(["create act:cm:logged-in", "create act:cm:placed-order"]);
    expect(created(second.output)).toEqual([
      "create act:cm:viewed-page",
      "create act:cm:started-trial",
      "create person field str:cm:company",
    ]);
    expect(existsSync(fresh)).toBe(true);
    expect((await push()).output).toContain("nothing to push");
    expect((await planWith(fresh, "diff")).code).toBe(0);
  }, 60_000);
});
