import { DurableObject } from "cloudflare:workers";
import { relayConfig } from "../config.ts";
import type { RelayEnv } from "../env.ts";
import type { BatchNote } from "./binding.ts";
import { type CircuitView, KEY_REFUSED, KeyCircuits, type Permit, type Probe, RefusalWindow } from "./refusals.ts";
import { BudgetLedger, type LedgerStats, type Slot, type SyncAnswer, type SyncReport } from "./seconds.ts";

export interface PacerStats extends LedgerStats {
  last_batch: { messages: number; oldest_message_age_s: number; at: string } | null;
  refused_last_15s: number;
  key_refused: CircuitView[];
}

/** The account's refusals as every sender must heed them: until when the 4xx window is open, and the sites whose key Ortto refuses. */
export interface AccountView {
  refusedUntil: number;
  keyRefused: CircuitView[];
}

/** What the pacer tells a sender after a 4xx or a success: the window, and the site's circuit. */
export interface RefusalAnswer {
  refusedUntil: number;
  nextProbeAt?: number;
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
  #refusals = new RefusalWindow();
  #circuits = new KeyCircuits();

  get #budget(): BudgetLedger {
    this.#ledger ??= new BudgetLedger(relayConfig(this.env).maxRps);
    return this.#ledger;
  }

  /**
   * A request's slot, with what every sender must know before it sends: the 4xx window and the
   * refused keys (a consumer's isolate may never have synced: the slot is the round trip it makes).
   */
  slot(maxWaitMs: number, batch?: BatchNote): Slot & AccountView {
    if (batch) this.#batch = batch;
    const now = Date.now();
    return { ...this.#budget.slot(now, maxWaitMs), refusedUntil: this.#refusals.openUntil(now), keyRefused: this.#circuits.list() };
  }

  sync(report: SyncReport): SyncAnswer & AccountView {
    const now = Date.now();
    return { ...this.#budget.sync(report, now), refusedUntil: this.#refusals.openUntil(now), keyRefused: this.#circuits.list() };
  }

  /** A request Ortto answered 4xx (not 429): counted in the window; a refused key opens (or backs off) its site's circuit. */
  refused(report: { status: number; site?: string; permit?: string }): RefusalAnswer {
    const now = Date.now();
    if (report.permit) this.#refusals.settle(report.permit, true, now);
    else this.#refusals.record(now);
    const nextProbeAt = report.site && KEY_REFUSED.has(report.status) ? this.#circuits.refused(report.site, report.status, now) : undefined;
    // Any other 4xx (a 400 for the activities): Ortto took the key, so its circuit closes.
    if (report.site && !KEY_REFUSED.has(report.status)) this.#circuits.works(report.site);
    return { refusedUntil: this.#refusals.openUntil(now), ...(nextProbeAt ? { nextProbeAt } : {}) };
  }

  /** A request that was not refused: its permit is returned, and its site's key works. */
  succeeded(report: { site?: string; permit?: string }): RefusalAnswer {
    const now = Date.now();
    if (report.permit) this.#refusals.settle(report.permit, false, now);
    if (report.site) this.#circuits.works(report.site);
    return { refusedUntil: this.#refusals.openUntil(now) };
  }

  /**
   * Asked before each inline request while a window of 4xx answers is open, and by a fresh isolate
   * before its first: the permit, with the account's window and refused keys for it to heed.
   */
  admit(ttlMs: number): Permit & AccountView {
    const now = Date.now();
    const permit = this.#refusals.admit(now, ttlMs);
    return { ...permit, refusedUntil: this.#refusals.openUntil(now), keyRefused: this.#circuits.list() };
  }

  /** Asked before a request of a site whose circuit is open: one probe at a time. */
  probe(site: string, ttlMs: number): Probe {
    return this.#circuits.probe(site, Date.now(), ttlMs);
  }

  pause(untilMs: number): number {
    this.#budget.pause(untilMs, Date.now());
    return this.#budget.pausedUntil;
  }

  stats(): PacerStats {
    const b = this.#batch;
    return {
      ...this.#budget.stats(Date.now()),
      refused_last_15s: this.#refusals.count(Date.now()),
      key_refused: this.#circuits.list(),
      last_batch: b
        ? { messages: b.messages, oldest_message_age_s: Math.round(b.oldestAgeMs / 1000), at: new Date(b.at).toISOString() }
        : null,
    };
  }
}
