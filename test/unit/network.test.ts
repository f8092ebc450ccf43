import { describe, expect, it } from "vitest";
import { clientNetwork, wideNetwork } from "../../worker/limits/network.ts";

describe("clientNetwork: what every per-IP budget keys on", () => {
  it("keys IPv4 by its address", () => {
    expect(clientNetwork("203.0.113.7")).toBe("203.0.113.7");
    expect(clientNetwork(" 203.0.113.7 ")).toBe("203.0.113.7");
  });

  it("keys IPv6 by its /64, however the address is written", () => {
    const net = "2001:db8:aa:bb::/64";
    for (const ip of ["2001:db8:aa:bb::1", "2001:0db8:00aa:00bb:ffff:1:2:3", "2001:DB8:AA:BB:0:0:0:9", "2001:db8:aa:bb:1234::"]) {
      expect(clientNetwork(ip)).toBe(net);
    }
    expect(clientNetwork("2001:db8:aa:bc::1")).not.toBe(net);
    expect(clientNetwork("::1")).toBe("0:0:0:0::/64");
    expect(clientNetwork("2001:db8::")).toBe("2001:db8:0:0::/64");
  });

  it("keys an IPv4-mapped IPv6 address as the IPv4 client", () => {
    expect(clientNetwork("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(clientNetwork("0:0:0:0:0:ffff:192.0.2.1")).toBe("192.0.2.1");
  });

  it("keys a request without a client address as one shared 'unknown'", () => {
    expect(clientNetwork(undefined)).toBe("unknown");
    expect(clientNetwork("")).toBe("unknown");
  });

  it("puts an IPv6 /64 in its /48, and an IPv4 address in none", () => {
    expect(wideNetwork(clientNetwork("2001:db8:aa:bb::1"))).toBe("2001:db8:aa::/48");
    expect(wideNetwork(clientNetwork("2001:db8:aa:ff:1::"))).toBe("2001:db8:aa::/48");
    expect(wideNetwork(clientNetwork("203.0.113.7"))).toBeUndefined();
  });
});
