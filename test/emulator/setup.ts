/** setupFiles of the emulator project: the emulator under test holds the catalogue before a file's tests (test/fixtures/account.ts). */
import { exports } from "cloudflare:workers";
import { beforeAll } from "vitest";
import { pushPlan } from "../fixtures/account.ts";

beforeAll(() => pushPlan("http://emulator", (input, init) => exports.default.fetch(input as string, init)));
