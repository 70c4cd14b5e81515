import type { OrderProgress } from '@fleetpatch/shared';

/**
 * The longest an order's first report is held, whatever the window: the coordinator counts an order
 * delivered from its first report (or its result) and times out one not delivered within the
 * rollout's `deliveryDeadlineSeconds`, at least a second, which a long window must not approach.
 */
export const FIRST_REPORT_MAX_HOLD_MS = 250;

/**
 * An order's progress reports on their way to the wire, coalesced. Progress is for people watching
 * (the coordinator writes no audit row for it, and its in-flight phases may be skipped): what they
 * need is the phase a host is in whenever it is in one for a while, not every phase a fast order
 * passed through in a few milliseconds. So:
 *
 * - a report with health results goes at once, and so does what was held for its order before it:
 *   every poll's results are shown and none is replaced;
 * - any other report is held for up to `windowMs` from when the first of them was held (the order's
 *   very first report, `accepted`, for at most `FIRST_REPORT_MAX_HOLD_MS`); a newer report of the
 *   same order replaces it, and the order's result drops it.
 *
 * An order that finishes within the window then costs its result alone on the wire instead of six
 * frames (each one a send, a parse and a state change on the coordinator, which takes the result as
 * the delivery too); a phase that lasts (a dpkg run, a health wait) still shows within `windowMs`,
 * and an order still running shows as delivered within `FIRST_REPORT_MAX_HOLD_MS`. Nothing is reported
 * that the journal does not hold: a held report was made after its phase was journaled, and goes out
 * later or never. `windowMs` 0 sends every report at once.
 */
export class ProgressCoalescer {
  private readonly held = new Map<string, { report: OrderProgress; timer: NodeJS.Timeout }>();
  private readonly started = new Set<string>();

  constructor(
    private readonly send: (report: OrderProgress) => void,
    private readonly windowMs: number,
  ) {}

  progress(report: OrderProgress): void {
    const first = !this.started.has(report.orderId);
    this.started.add(report.orderId);
    if (this.windowMs === 0 || report.health !== undefined) {
      this.flush(report.orderId);
      this.send(report);
      return;
    }
    const pending = this.held.get(report.orderId);
    if (pending) {
      pending.report = report;
      return;
    }
    const holdMs = first ? Math.min(this.windowMs, FIRST_REPORT_MAX_HOLD_MS) : this.windowMs;
    const timer = setTimeout(() => this.flush(report.orderId), holdMs);
    timer.unref();
    this.held.set(report.orderId, { report, timer });
  }

  /** The order's result is on its way: what was held for it says less and is dropped. */
  finished(orderId: string): void {
    this.drop(orderId);
    this.started.delete(orderId);
  }

  /** Stops every timer; nothing held is sent. */
  close(): void {
    for (const orderId of [...this.held.keys()]) this.drop(orderId);
    this.started.clear();
  }

  private flush(orderId: string): void {
    const pending = this.held.get(orderId);
    if (!pending) return;
    this.drop(orderId);
    this.send(pending.report);
  }

  private drop(orderId: string): void {
    const pending = this.held.get(orderId);
    if (!pending) return;
    clearTimeout(pending.timer);
    this.held.delete(orderId);
  }
}
