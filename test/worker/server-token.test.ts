/**
 * Who claims to be a server: only an `Authorization: Bearer` header with exactly the SERVER_TOKEN
 * (a browser adds other Authorization headers itself, on a site behind HTTP basic auth).
 */
import { beforeEach, describe, expect, it } from "vitest";
import { emulator } from "./helpers.ts";
import { forwarded, open, person, postWith, SERVER_TOKEN, unique } from "./people.ts";

beforeEach(async () => {
  await emulator.reset();
});

describe("only a Bearer Authorization header claims to be a server", () => {
  it("serves a visitor of a site behind HTTP basic auth (the browser adds Authorization to same-origin requests)", async () => {
    const res = await postWith(open, { activities: [person(unique("staging"))] }, { headers: { Authorization: "Basic dXNlcjpwYXNz" } });
    expect(res.status).toBe(200);
    const empty = await postWith(open, { activities: [person(unique("staging"))] }, { headers: { Authorization: "" } });
    expect(empty.status).toBe(200);
    expect(await forwarded()).toHaveLength(2);
  });
});
describe("the server token's format", () => {
  const body = () => ({ activities: [person(unique("srv"))] });
  const auth = async (value: string, bindings: Record<string, string> = open) =>
    (await postWith(bindings, body(), { origin: null, headers: { Authorization: value } })).status;

  it("accepts only the exact token, however the Bearer scheme is spaced or cased", async () => {
    expect(await auth(`Bearer ${SERVER_TOKEN}`)).toBe(200);
    expect(await auth(`bearer   ${SERVER_TOKEN}  `)).toBe(200);
    expect(await auth("Bearer ")).toBe(401);
    expect(await auth("Bearer")).toBe(401);
    expect(await auth(`Bearer ${SERVER_TOKEN.slice(0, -1)}`)).toBe(401);
    expect(await auth(`Bearer ${SERVER_TOKEN}x`)).toBe(401);
    expect(await auth(`Bearer ${SERVER_TOKEN} extra`)).toBe(401);
    expect(await auth(`Bearer ${SERVER_TOKEN}, Bearer ${SERVER_TOKEN}`)).toBe(401); // two headers, as Headers joins them
    // Another scheme is no claim to be a server: a page's request, and without an Origin, refused as one.
    expect(await auth(`Basic ${btoa(`x:${SERVER_TOKEN}`)}`)).toBe(403);
  });

  it("refuses every token when SERVER_TOKEN is empty or only separators", async () => {
    for (const configured of ["", " ", " , ", ",,"]) {
      expect(await auth("Bearer ", { SERVER_TOKEN: configured })).toBe(401);
      expect(await auth("Bearer ,", { SERVER_TOKEN: configured })).toBe(401);
      expect(await auth("Bearer x", { SERVER_TOKEN: configured })).toBe(401);
    }
  });
});
