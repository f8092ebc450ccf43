import type { CatalogueInput } from "../../shared/catalogue.ts";

/**
 * For `vi.mock("../../relay.config.ts", …)`: the default catalogue with an operator's changes,
 * checked by defineCatalogue as the real one is. (vi.mock is hoisted above imports, so the
 * factory imports this module itself.)
 */
export async function catalogueWith(original: () => Promise<{ default: CatalogueInput }>, changes: Partial<CatalogueInput>) {
  const { default: catalogue } = await original();
  const { defineCatalogue } = await import("../../shared/catalogue.ts");
  return { default: defineCatalogue({ ...catalogue, ...changes }) };
}
