import { exports } from "cloudflare:workers";
import { expect, it } from "vitest";
it("reaches the emulator", async () => {
  const res = await exports.default.fetch("http://relay/x");
  expect(await res.json()).toMatchObject({ emulator: true, key: "k" });
});
