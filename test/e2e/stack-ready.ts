/// <reference types="node" />
/**
 * setupFiles of the e2e project: before a file's tests, waits until its worker's stack
 * (global-setup.ts) is ready, the relay answering and the emulator holding the catalogue. The
 * stacks start while the files of the projects before e2e run; a stack that failed to start fails
 * the file with what dev.mjs printed.
 */
import { beforeAll } from "vitest";
import { urls } from "./helpers.ts";

beforeAll(async () => {
  for (;;) {
    const res = await fetch(`${urls().pages}/_ready`);
    if (res.status === 200) return;
    if (res.status !== 503) throw new Error(`the e2e stack did not start: ${await res.text()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}, 120_000);
