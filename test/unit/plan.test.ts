import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import catalogue from "../../relay.config.ts";
import { planTable } from "../../scripts/plan-table.ts";
import { relayTypings } from "../../scripts/typings.ts";
import { activitiesRequestSchema, describeIssue, fastAccept } from "../../shared/activities.ts";

const handWritten = readFileSync(new URL("../../snippet/src/relay.d.ts", import.meta.url), "utf8");

describe("npm run plan", () => {
  const table = planTable(catalogue);

  it("lists every attribute with its friendly name, Ortto id, kind, required, source and the display template", () => {
    expect(table).toContain("| activity | Ortto id | attribute | Ortto id | kind | required | source | display template |");
    expect(table).toContain(
      "| Placed order | `act:cm:placed-order` | `orderNumber` | `str:cm:order-number` | text |  | page | `Order number {{attribute.order_number}} placed, {{attribute.item_count}} items for {{attribute.order_total}}` |",
    );
    expect(table).toContain("|  |  | `orderTotal` | `int:cm:order-total` | currency |  | page |  |");
    expect(table).toContain("|  |  | `webBrowser` | `str:cm:web-browser` | text |  | relay: browser |  |");
    expect(table).toContain("| `str:cm:plan` | single_select (starter, pro) | yes | page |");
    expect(table).toContain("|  |  | `deliveryDate` | `dtz:cm:delivery-date` | date (Australia/Sydney) |  | page |  |");
    expect(table).toContain("| `company` | `str:cm:company` | text | The company they work for. |");
  });
});

describe("the generated typings", () => {
  const typings = relayTypings(catalogue, handWritten);

  it("type track by the catalogue's activities and identify by its person fields", () => {
    expect(typings).toContain("Generated from relay.config.ts");
    expect(typings).toContain('<A extends ActivityName>(command: "track", activity: A, ...attributes: TrackArguments<A>): void;');
    expect(typings).toContain('"act:cm:placed-order": Activities["placed-order"];');
    expect(typings).toContain("    orderTotal?: number;\n");
    expect(typings).toContain('    "int:cm:order-total"?: number;\n');
    expect(typings).toContain("    deliveryDate?: string | OrttoDate;\n");
    expect(typings).toContain('} & ({ plan: "starter" | "pro" } | { "str:cm:plan": "starter" | "pro" });');
    expect(typings).toContain("  company?: string;\n");
    // What the relay fills is not the page's to send.
    expect(typings).not.toMatch(/webBrowser\?|"str:cm:web-browser"\?/);
    expect(typings).not.toContain("[fieldId: string]: unknown");
    // The descriptions are the editor's hover text.
    expect(typings).toContain("/** The order's total, in dollars: 24.99.");
  });

  it("keep a description from closing its comment", () => {
    const tricky = {
      ...catalogue,
      activities: { "act:cm:x": { name: "X */ evil", attributes: { "str:cm:a": { kind: "text" as const, description: "a */ b" } } } },
    };
    const out = relayTypings(tricky, handWritten);
    expect(out).toContain("a *\\/ b");
    expect(out).not.toContain("a */ b");
  });

  it("fail the build when the hand-written typings lose the shape they are generated from", () => {
    expect(() => relayTypings(catalogue, handWritten.replace("export interface IdentifyFields", "export interface Fields"))).toThrow(
      /IdentifyFields interface is not where scripts\/typings.ts expects it/,
    );
  });
});

describe("required attributes", () => {
  const schema = activitiesRequestSchema(catalogue);
  const accepts = fastAccept(catalogue);
  const trial = (attributes: Record<string, unknown>) => ({
    activities: [{ activity_id: "act:cm:started-trial", person_id: "00600e153df0a3b67ce60f00", attributes }],
  });

  it("are refused when missing, by the fast path and by the schema, naming both names", () => {
    expect(accepts(trial({ "str:cm:plan": "pro" }))).toBe(true);
    expect(accepts(trial({}))).toBe(false);
    expect(schema.safeParse(trial({})).error?.issues.map(describeIssue)).toEqual([
      { path: "activities.0.attributes.str:cm:plan", message: "required by the catalogue: send plan (or str:cm:plan)" },
    ]);
    expect(schema.safeParse({ activities: [{ activity_id: "act:cm:started-trial", person_id: "0060" }] }).success).toBe(false);
  });
});
