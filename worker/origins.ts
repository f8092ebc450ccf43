/**
 * ALLOWED_ORIGINS matching: exact origins (`https://shop.example`) and wildcard subdomains
 * (`https://*.shop.example`, which matches `https://www.shop.example` but not the apex
 * `https://shop.example`, nor `https://evilshop.example`). Never `*`: a relay that holds a
 * key must name the sites it serves.
 */
export type OriginMatcher = (origin: string) => boolean;

export function originMatcher(list: string | undefined): OriginMatcher {
  const exact = new Set<string>();
  const wildcards: { scheme: string; suffix: string }[] = [];
  for (const raw of (list ?? "").split(",")) {
    const entry = raw.trim().replace(/\/+$/, "").toLowerCase();
    if (!entry || entry === "*") continue;
    const m = /^(https?:\/\/)\*(\.[a-z0-9.-]+(?::\d+)?)$/.exec(entry);
    if (m?.[1] && m[2]) wildcards.push({ scheme: m[1], suffix: m[2] });
    else exact.add(entry);
  }
  return (origin) => {
    const o = origin.toLowerCase();
    if (exact.has(o)) return true;
    return wildcards.some(({ scheme, suffix }) => {
      if (!o.startsWith(scheme) || !o.endsWith(suffix)) return false;
      const label = o.slice(scheme.length, o.length - suffix.length);
      return /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(label);
    });
  };
}
