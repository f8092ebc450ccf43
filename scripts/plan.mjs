#!/usr/bin/env node
/** `npm run plan`: prints the tracking plan (relay.config.ts) as Markdown tables (scripts/plan-table.ts). */
import { loadTs } from "./load-ts.mjs";

const [{ planTable }, { default: catalogue }] = await Promise.all([loadTs("scripts/plan-table.ts"), loadTs("relay.config.ts")]);
process.stdout.write(planTable(catalogue));
