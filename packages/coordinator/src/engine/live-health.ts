import type { HealthCheckResult, LiveCheck, LiveHealth } from '@fleetpatch/shared';
import type { UndoLog } from './undo-log.js';

/** An observation that changed only in what it saw (same verdicts) is put on the record at most this often. */
export const LIVE_HEALTH_EVENT_INTERVAL_MS = 10_000;
/** Orders remembered at most; the oldest are forgotten first (a finished rollout's hosts, long since). */
const MAX_ORDERS = 10_000;
/**
 * `host.health` rows one order may put on the record. A check that flaps through a long bake says so
 * in the first hundred; past them the status stays live, the result has the last word, and a host
 * flipping its verdicts on every frame cannot grow the audit trail without end.
 */
export const MAX_HEALTH_ROWS_PER_ORDER = 100;

/** What one progress report with health results did to the board. */
export interface LiveHealthNote {
  health: LiveHealth;
  /** Whether it is worth a `host.health` event: a verdict changed, or what a check saw, not too often. */
  recordable: boolean;
}

/**
 * Each order's latest health results while its host verifies or bakes, as its agent reports them
 * on every poll: which check, what it saw, since when it has held that verdict, and the polls in a
 * row with a failing check. Kept in memory, keyed by order id, so a retried host (a new order) never
 * shows the previous attempt's results; after a coordinator restart the next poll fills it again.
 *
 * It also decides what goes on the record (`recordable`), so the audit trail and the event stream
 * get a row when something changed — a check starts or stops failing, the phase moves from
 * verifying to baking — and a changed observation with the same verdicts at most once every
 * `LIVE_HEALTH_EVENT_INTERVAL_MS`, not one row per probe.
 */
export class LiveHealthBoard {
  private readonly byOrder = new Map<string, { health: LiveHealth; recordedAt: number; rows: number }>();

  /**
   * Records one poll's results. `failingPolls` is the agent's count (protocol 5); an older agent
   * sends none, and the board counts the polls it saw instead.
   */
  note(
    orderId: string,
    phase: LiveHealth['phase'],
    results: readonly HealthCheckResult[],
    failingPolls: number | undefined,
    now: number,
    undo?: UndoLog,
  ): LiveHealthNote {
    const previous = this.byOrder.get(orderId);
    const before = previous?.health;
    const failing = results.some((result) => !result.ok);
    const checks = results.map((result): LiveCheck => {
      const earlier = before?.checks.find((c) => c.check === result.check && c.kind === result.kind);
      const since = earlier !== undefined && earlier.ok === result.ok ? earlier.since : result.at;
      return { check: result.check, kind: result.kind, ok: result.ok, observed: result.observed, at: result.at, since };
    });
    const health: LiveHealth = {
      phase,
      checks,
      failingPolls: failingPolls ?? (failing ? (before?.failingPolls ?? 0) + 1 : 0),
      updatedAt: new Date(now).toISOString(),
    };
    const verdictChanged = before === undefined || before.phase !== phase || !sameVerdicts(before.checks, checks);
    const sawOther = before !== undefined && !sameObservations(before.checks, checks);
    const rows = previous?.rows ?? 0;
    const recordable =
      rows < MAX_HEALTH_ROWS_PER_ORDER &&
      (verdictChanged || (sawOther && now - (previous?.recordedAt ?? 0) >= LIVE_HEALTH_EVENT_INTERVAL_MS));
    undo?.push(() => (previous === undefined ? this.byOrder.delete(orderId) : this.byOrder.set(orderId, previous)));
    // Re-inserted so the map's order is by last report: the oldest entry is the one forgotten.
    this.byOrder.delete(orderId);
    this.byOrder.set(orderId, {
      health,
      recordedAt: recordable ? now : (previous?.recordedAt ?? now),
      rows: recordable ? rows + 1 : rows,
    });
    if (this.byOrder.size > MAX_ORDERS) {
      const oldest = this.byOrder.entries().next().value;
      if (oldest !== undefined) {
        this.byOrder.delete(oldest[0]);
        undo?.push(() => this.byOrder.set(oldest[0], oldest[1]));
      }
    }
    return { health, recordable };
  }

  /** The latest results of this order; undefined when none came since the coordinator started. */
  of(orderId: string | null): LiveHealth | undefined {
    return orderId === null ? undefined : this.byOrder.get(orderId)?.health;
  }

  /** The order is over for good (it failed, was reverted or cancelled): its results are history. */
  forget(orderId: string, undo?: UndoLog): void {
    const entry = this.byOrder.get(orderId);
    if (entry === undefined) return;
    this.byOrder.delete(orderId);
    undo?.push(() => this.byOrder.set(orderId, entry));
  }
}

function sameVerdicts(a: readonly LiveCheck[], b: readonly LiveCheck[]): boolean {
  return a.length === b.length && a.every((check, i) => check.check === b[i]?.check && check.ok === b[i]?.ok);
}

function sameObservations(a: readonly LiveCheck[], b: readonly LiveCheck[]): boolean {
  return a.every((check, i) => check.observed === b[i]?.observed);
}
