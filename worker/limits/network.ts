/**
 * The client network a request comes from, which every per-IP budget keys on: an IPv4 address
 * as it is, an IPv6 address by its /64. An IPv6 client is given a whole /64 (2^64 addresses),
 * so a budget per address would give each client an endless supply of fresh budgets.
 */
export function clientNetwork(ip: string | null | undefined): string {
  const address = (ip ?? "").trim().toLowerCase();
  if (!address.includes(":")) return address || "unknown";
  // An IPv4 address written as IPv6 (::ffff:192.0.2.1) is that IPv4 client.
  const mapped = /^(?:(?:0{1,4}:){5}|::)ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  if (mapped?.[1]) return mapped[1];
  const [head = "", tail] = address.split("::", 2) as [string, string | undefined];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  const prefix = groups.slice(0, 4).map((g) => (g.replace(/^0+/, "") || "0").slice(0, 4));
  while (prefix.length < 4) prefix.push("0");
  return `${prefix.join(":")}::/64`;
}

/** How many /64 budgets of people one /48 holds in all: an IPv6 site or tunnel broker customer gets a /48 (65,536 /64s). */
export const WIDE_NETWORK_FACTOR = 10;

/** The /48 an IPv6 client network (a /64) belongs to, or undefined for IPv4. */
export function wideNetwork(network: string): string | undefined {
  if (!network.endsWith("::/64")) return undefined;
  return `${network.split(":").slice(0, 3).join(":")}::/48`;
}
