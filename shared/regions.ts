/** Ortto's API host per instance region (Ortto's docs: "Australia or Europe will need to use specific service endpoints"). */
export const REGION_BASES = {
  us: "https://api.ap3api.com",
  au: "https://api.au.ap3api.com",
  eu: "https://api.eu.ap3api.com",
} as const;
