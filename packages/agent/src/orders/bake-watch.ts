import { type Change, ErrorCode, FleetError } from '@fleetpatch/shared';
import type { Logger } from 'pino';
import type { Driver } from '../drivers/driver.js';
import type { ApplyEntry } from '../journal.js';
import type { OrderContext } from './order-context.js';
import { restoreAndFinish } from './snapshot-restore.js';
import { supersedingOrder } from './superseded.js';
import { targetOf } from './target-lock.js';

interface Watch {
  abort: AbortController;
  done: Promise<void>;
}

/**
 * Bake: the host stays under watch after it reported healthy. A failure now is still the patch's
 * failure — the host reverts itself (unless autoRevert is none) and reports a second result. At
 * most one watch per apply order; a revert, a cancel or the agent stopping ends it.
 */
export class BakeWatch {
  private readonly watches = new Map<string, Watch>();
  private stopped = false;

  constructor(private readonly ctx: OrderContext) {}

  /** After an apply ended healthy: watch for the order's own bakeSeconds, when it has any. */
  startAfterHealthy(entry: ApplyEntry, driver: Driver<Change, unknown>, log: Logger): void {
    const { order } = entry;
    if (order.bakeSeconds > 0 && order.health.checks.length > 0 && this.bakeable(order.orderId))
      this.start(entry, driver, log, order.bakeSeconds);
  }

  /**
   * The coordinator says this order's wave passed and bakes for `seconds`: watch that long from now,
   * replacing the watch started when the host reported healthy (so the host is watched for the
   * whole of its wave's bake, not only for bakeSeconds after its own result).
   */
  async extend(orderId: string, seconds: number): Promise<void> {
    const entry = this.bakeable(orderId);
    if (!entry || entry.order.health.checks.length === 0 || seconds <= 0) {
      this.logSuperseded(orderId);
      return;
    }
    const driver = this.ctx.driverFor(entry.order.change);
    if (!driver) return;
    // Until no watch is left: two extensions at once must end with one watch, not an orphan.
    for (let current = this.watches.get(orderId); current; current = this.watches.get(orderId)) {
      current.abort.abort(new FleetError(ErrorCode.cancelled, 'bake extended'));
      await current.done;
    }
    // While we waited, the old watch may have failed and reverted the host, or a revert may have begun.
    const still = this.bakeable(orderId);
    if (!still) return;
    this.start(still, driver, this.ctx.log.child({ orderId, rolloutId: entry.order.rolloutId }), seconds);
  }

  /**
   * A new apply order is about to change the host: the watches of the orders it supersedes end now. Their checks
   * describe a configuration the new order replaces, and their verdict could no longer revert
   * anything (see `bakeable`).
   */
  endSupersededBy(started: ApplyEntry): void {
    // Called as it is about to change the host: judged as the applying order it is a moment later.
    const applying: ApplyEntry = { ...started, phase: 'applying' };
    for (const [orderId, watch] of this.watches) {
      const entry = this.ctx.journal.get(orderId);
      if (entry?.kind !== 'apply' || supersedingOrder([applying], entry) === undefined) continue;
      this.ctx.log.info(
        { orderId, supersededBy: started.orderId },
        'bake watch ended: a later order on its target began',
      );
      watch.abort.abort(new FleetError(ErrorCode.cancelled, `superseded by ${started.orderId}`));
    }
  }

  /** Ends the order's watch, if any, without waiting for it. */
  cancel(orderId: string, reason: FleetError): void {
    this.watches.get(orderId)?.abort.abort(reason);
  }

  /** Ends the order's watch, if any, and waits until it is gone. */
  async end(orderId: string, reason: FleetError): Promise<void> {
    const watch = this.watches.get(orderId);
    watch?.abort.abort(reason);
    await watch?.done;
  }

  /** No watch starts from now on; those running end at once. Resolves when they have. */
  async stop(): Promise<void> {
    this.stopped = true;
    const watches = [...this.watches.values()];
    for (const { abort } of watches) abort.abort(new FleetError(ErrorCode.cancelled, 'agent stopping'));
    await Promise.all(watches.map(({ done }) => done));
  }

  /**
   * The apply entry, when it is still one a bake may watch: done, healthy, carrying its change, and
   * not superseded by a later order on the same target (`supersedingOrder`: a bake of an order a
   * newer one replaced would revert the newer one's target to the older snapshot).
   */
  private bakeable(orderId: string): ApplyEntry | undefined {
    if (this.stopped || this.ctx.reverting.isHeld(orderId)) return undefined;
    const entry = this.ctx.journal.get(orderId);
    if (entry?.kind !== 'apply') return undefined;
    if (entry.phase !== 'done' || entry.result?.outcome !== 'healthy' || !entry.changed) return undefined;
    if (supersedingOrder(this.ctx.journal.all(), entry)) return undefined;
    return entry;
  }

  /** Says so when an order a later one superseded is asked to bake, or its bake failed: it is left as it is. */
  private logSuperseded(orderId: string): void {
    const entry = this.ctx.journal.get(orderId);
    if (entry?.kind !== 'apply') return;
    const later = supersedingOrder(this.ctx.journal.all(), entry);
    if (later)
      this.ctx.log.warn(
        { orderId, supersededBy: later.orderId },
        'not watched nor reverted: a later order on the same target superseded this one',
      );
  }

  private start(entry: ApplyEntry, driver: Driver<Change, unknown>, log: Logger, seconds: number): void {
    const { order } = entry;
    const abort = new AbortController();
    const watch: Watch = {
      abort,
      done: this.watch(entry, driver, log, seconds, abort.signal)
        .catch((err: unknown) => {
          if (!abort.signal.aborted) log.error({ err }, 'bake watch failed');
        })
        .finally(() => {
          if (this.watches.get(order.orderId) === watch) this.watches.delete(order.orderId);
        }),
    };
    this.watches.set(order.orderId, watch);
  }

  private async watch(
    { order }: ApplyEntry,
    driver: Driver<Change, unknown>,
    log: Logger,
    seconds: number,
    signal: AbortSignal,
  ): Promise<void> {
    const { ctx } = this;
    const verdict = await ctx.health.watch(order.health, seconds, {
      signal,
      onResults: (results, failingPolls) =>
        ctx.events.progress(order.orderId, 'verifying', 'baking', results, failingPolls),
    });
    if (verdict.healthy || signal.aborted) return;
    // An order holding the target (a later one still at its preconditions or baseline) goes first: a
    // restore under it would change what it is about to snapshot. Once the target is free, the
    // verdict is judged again — that order may have changed the host and superseded this one.
    const releaseTarget = await ctx.targets.holdWhenFree(targetOf(order.change), signal);
    if (releaseTarget === undefined) return;
    // The verdict is only ours to act on while the order is still healthy and changed: a revert or
    // another watch may have restored the host (and failed the checks) while this one polled.
    const current = this.bakeable(order.orderId);
    if (!current) {
      releaseTarget();
      this.logSuperseded(order.orderId);
      return;
    }
    const release = ctx.reverting.hold(order.orderId); // with the check, no await between: one actor at a time
    try {
      log.warn({ reason: verdict.reason }, 'health failed during bake');
      if (!order.revertOnHealthFailure) {
        await ctx.finish(current, {
          outcome: 'failed',
          changed: true,
          errorCode: ErrorCode.healthFailed,
          reason: `during bake: ${verdict.reason}; left changed for inspection (autoRevert: none)`,
          health: verdict.results,
        });
        return;
      }
      const reverting = await ctx.journal.update(current, { phase: 'reverting' }, ctx.now());
      ctx.events.progress(order.orderId, 'reverting', verdict.reason);
      await restoreAndFinish(
        ctx,
        reverting,
        driver,
        ctx.driverContext(new AbortController().signal, log, order.orderId),
        'failed',
        ErrorCode.healthFailed,
        `during bake: ${verdict.reason}`,
        { health: verdict.results },
      );
    } finally {
      releaseTarget();
      release();
    }
  }
}
