import { DurableObject } from "cloudflare:workers";
import { relayConfig } from "../config.ts";
import type { RelayEnv } from "../env.ts";
import type { BatchNote } from "./binding.ts";
import { BudgetLedger, type LedgerStats, type Slot, type SyncAnswer, type SyncReport } from "./ledger.ts";

export interface PacerStats extends LedgerStats {
  last_batch: { messages: number; oldest_message_age_s: number; at: string } | null;
}

/**
 * The account's one request budget (ORTTO_MAX_RPS), shared by every isolate in every location:
 * a single Durable Object (named "account") holding the ledger of seconds. The queue consumer
 * asks it for a slot before each request (`slot`); isolates sync with it at most once a second,
 * in `waitUntil` after their answers, to charge their inline sends and renew their inline lease
 * (`sync`); a 429 anywhere pauses everyone (`pause`). State is in memory on purpose: it is about
 * the next few seconds, and the object stays alive while anyone is sending.
 */
export class UpstreamPacer extends DurableObject<RelayEnv> {
  #ledger?: BudgetLedger;
  #batch: BatchNote | null = null;

  get #budget(): BudgetLedger {
    this.#ledger ??= new BudgetLedger(relayConfig(this.env).maxRps);
    return this.#ledger;
  }

  slot(maxWaitMs: number, batch?: BatchNote): Slot {
    if (batch) this.#batch = batch;
    return this.#budget.slot(Date.now(), maxWaitMs);
  }

  sync(report: SyncReport): SyncAnswer {
    return this.#budget.sync(report, Date.now());
  }

  pause(untilMs: number): number {
    this.#budget.pause(untilMs, Date.now());
    return this.#budget.pausedUntil;
  }

  stats(): PacerStats {
    const b = this.#batch;
    return {
      ...this.#budget.stats(Date.now()),
      last_batch: b
        ? { messages: b.messages, oldest_message_age_s: Math.round(b.oldestAgeMs / 1000), at: new Date(b.at).toISOString() }
        : null,
    };
  }
}
