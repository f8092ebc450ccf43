/**
 * `npm run plan`: the tracking plan as Markdown, to set the activities up in Ortto's UI (their
 * attributes, kinds and display templates) and to review a change of the plan in a pull request.
 */
import { EDGE_SOURCES, type ResolvedCatalogue } from "../shared/catalogue.ts";
import { type PlannedField, trackingPlan } from "../shared/plan.ts";

/** A table cell: pipes escaped, one line. */
const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\s*\n\s*/g, " ");
const code = (text: string) => (text ? `\`${text}\`` : "");

function kind(field: PlannedField): string {
  const options = field.options ? ` (${field.options.join(", ")})` : "";
  const zone = field.timezone ? ` (${field.timezone})` : "";
  return `${field.kind}${options}${zone}`;
}

function source(field: PlannedField): string {
  return field.source ? `relay: ${field.source}` : "page";
}

export function planTable(catalogue: ResolvedCatalogue): string {
  const plan = trackingPlan(catalogue);
  const lines = [
    "## Activities",
    "",
    "| activity | Ortto id | attribute | Ortto id | kind | required | source | display template |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const activity of plan.activities.values()) {
    const first = [cell(activity.name), code(activity.id)];
    const display = activity.display ? code(cell(activity.display)) : "";
    if (!activity.attributes.length) lines.push(`| ${first.join(" | ")} | | | | | | ${display} |`);
    activity.attributes.forEach((field, i) => {
      const head = i === 0 ? first : ["", ""];
      lines.push(
        `| ${[
          ...head,
          code(field.name),
          code(field.id),
          cell(kind(field)),
          field.required ? "yes" : "",
          source(field),
          i === 0 ? display : "",
        ].join(" | ")} |`,
      );
    });
  }
  lines.push(
    "",
    "## Person fields",
    "",
    "| person field | Ortto id | kind | description |",
    "| --- | --- | --- | --- |",
    ...plan.personFields.map((f) => `| ${code(f.name)} | ${code(f.id)} | ${cell(kind(f))} | ${cell(f.description ?? "")} |`),
    "",
    "Sources the relay fills (a page does not send these):",
    "",
    ...Object.entries(EDGE_SOURCES).map(([name, { from }]) => `- \`${name}\`: ${from}`),
    "",
  );
  return lines.join("\n");
}
