export * from "./activities.ts";
export * from "./catalogue.ts";
export * from "./field-ids.ts";
export * from "./ortto-types.ts";
